-- A SimBroker account's positions, cash, realised P&L and fees are folded from its fills
-- (tradenova_dagster/broker/sim_account.py, with ledger.book.Book): one owner per fact
-- (DESIGN.md §5). What duplicated the fills goes: the sim_positions table, and the cash,
-- realized_pl and fees_paid columns of sim_accounts. What fills cannot tell stays there:
-- initial_cash, last_equity (and its day), market_time, trading_blocked, version.
--
-- The fold needs the fills in the order they happened, which (ts, fill_id) does not give
-- (several fills share a bar's timestamp, and fill ids are random): `seq` numbers an
-- account's fills from 0 in that order. Rows written before this migration are numbered
-- by (ts, fill_id), the order the simulator used to list them.
DROP TABLE sim_positions;
ALTER TABLE sim_accounts DROP COLUMN cash;
ALTER TABLE sim_accounts DROP COLUMN realized_pl;
ALTER TABLE sim_accounts DROP COLUMN fees_paid;
CREATE TABLE sim_fills_numbered (
    account          VARCHAR     NOT NULL,
    fill_id          VARCHAR     NOT NULL,
    seq              BIGINT      NOT NULL,   -- 0, 1, 2... per account: the order of the fold
    run_id           VARCHAR,
    order_id         VARCHAR,
    client_order_id  VARCHAR,
    kind             VARCHAR     NOT NULL,   -- trade | expiry
    symbol           VARCHAR     NOT NULL,
    side             VARCHAR     NOT NULL,
    qty              DOUBLE      NOT NULL,
    price            DOUBLE      NOT NULL,
    commission       DOUBLE      NOT NULL,
    realized_pl      DOUBLE      NOT NULL,   -- P&L this fill closed, before fees (from the fold)
    ts               TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account, fill_id),
    UNIQUE (account, seq)
);
INSERT INTO sim_fills_numbered
SELECT account, fill_id, row_number() OVER (PARTITION BY account ORDER BY ts, fill_id) - 1, run_id, order_id,
       client_order_id, kind, symbol, side, qty, price, commission, realized_pl, ts
FROM sim_fills;
DROP TABLE sim_fills;
ALTER TABLE sim_fills_numbered RENAME TO sim_fills;

-- For SQL readers (reports, tests): each account's open quantities, summed from the fills.
-- Not a second copy: a view stores nothing. Prices and P&L come from the broker's fold.
CREATE VIEW sim_positions AS
SELECT account, symbol, sum(CASE side WHEN 'buy' THEN qty ELSE -qty END) AS qty
FROM sim_fills
GROUP BY account, symbol
HAVING abs(sum(CASE side WHEN 'buy' THEN qty ELSE -qty END)) > 1e-9;
