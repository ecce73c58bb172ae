-- The ledger (tradenova_dagster/ledger/): orders with their state, fills as the only
-- source of positions, and the bars a session has committed (exactly once per bar).

-- One row per order, its latest state (the old snapshot table had no writer). The row is
-- written in the same transaction as the bar that decided the order; `intent` and
-- `reason` survive a restart, so an exit adopted after a crash keeps its real reason.
DROP TABLE orders;
CREATE TABLE orders (
    account          VARCHAR     NOT NULL,
    run_id           VARCHAR,
    client_order_id  VARCHAR     NOT NULL,
    broker_order_id  VARCHAR,
    day              DATE        NOT NULL,   -- New York session date of the decision
    decision_ts      TIMESTAMPTZ NOT NULL,   -- the bar (its end) whose decision sent it
    symbol           VARCHAR     NOT NULL,
    side             VARCHAR     NOT NULL,
    qty              DOUBLE      NOT NULL,
    order_type       VARCHAR     NOT NULL,
    limit_price      DOUBLE,
    intent           VARCHAR     NOT NULL,   -- entry | exit_TP1 ... | exit_STOP | signal_exit | flatten ...
    reason           VARCHAR     NOT NULL,   -- why the session sent it
    status           VARCHAR     NOT NULL,   -- Alpaca's state machine (ledger/orders.py)
    filled_qty       DOUBLE      NOT NULL,
    filled_avg_price DOUBLE,
    broker_message   VARCHAR,                -- the broker's reason for a rejection, or the outcome
    updated_ts       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account, client_order_id)
);
CREATE INDEX orders_account_day ON orders (account, day);

-- Fills get a natural key (a duplicate is impossible, not just unlikely) and a reason:
-- 'trade', 'expiry' (settled at intrinsic value) or 'reconcile' (adopted from the broker).
ALTER TABLE fills ADD COLUMN fill_id VARCHAR;
ALTER TABLE fills ADD COLUMN reason VARCHAR DEFAULT 'trade';
CREATE UNIQUE INDEX fills_account_fill_id ON fills (account, fill_id);

-- One equity mark and one prediction per (account, bar). Copies left by earlier crashes
-- are dropped first (the first row of each bar is kept).
DELETE FROM equity_curve WHERE rowid NOT IN (SELECT min(rowid) FROM equity_curve GROUP BY account, ts);
CREATE UNIQUE INDEX equity_curve_account_ts ON equity_curve (account, ts);
DELETE FROM rl_predictions WHERE rowid NOT IN (SELECT min(rowid) FROM rl_predictions GROUP BY account, ts, model);
CREATE UNIQUE INDEX rl_predictions_account_ts ON rl_predictions (account, ts, model);

-- The bars a session has acted on, committed with everything the bar did. A restart
-- resumes after the last one; the signal's inputs are kept to rebuild its state exactly.
CREATE TABLE session_bars (
    account            VARCHAR     NOT NULL,
    day                DATE        NOT NULL,
    bar_ts             TIMESTAMPTZ NOT NULL,   -- the bar's start
    run_id             VARCHAR,
    position_direction INTEGER     NOT NULL,   -- what the signal saw: +1 call, -1 put, 0 flat
    position_pnl       DOUBLE      NOT NULL,
    position_bars      INTEGER     NOT NULL,
    committed_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account, bar_ts)
);
