-- SimBroker state (tradenova_dagster/broker/sim.py), one set of rows per account
-- (`sim:default`, `backtest:<id>`...). The warmup, session and flatten runs are separate
-- processes; they share an account through these tables. `version` on sim_accounts goes
-- up on every write, so a process can tell whether its in-memory copy is still current.
CREATE TABLE sim_accounts (
    account          VARCHAR     PRIMARY KEY,
    initial_cash     DOUBLE      NOT NULL,
    cash             DOUBLE      NOT NULL,
    realized_pl      DOUBLE      NOT NULL,   -- closed P&L before fees, since the account opened
    fees_paid        DOUBLE      NOT NULL,   -- commissions and regulatory fees, since it opened
    last_equity      DOUBLE      NOT NULL,   -- equity at the previous session's last mark (Alpaca's field)
    last_equity_day  DATE,                   -- the New York date last_equity was rolled on
    market_time      TIMESTAMPTZ,            -- time of the latest market update applied
    trading_blocked  BOOLEAN     NOT NULL,
    version          BIGINT      NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

-- Every order and bracket/OCO/OTO leg, open or closed. client_order_id is unique per
-- account (enforced by the broker, which answers a duplicate like Alpaca: 422/40010001).
CREATE TABLE sim_orders (
    account          VARCHAR     NOT NULL,
    id               VARCHAR     NOT NULL,
    client_order_id  VARCHAR     NOT NULL,
    run_id           VARCHAR,
    symbol           VARCHAR     NOT NULL,
    asset_class      VARCHAR     NOT NULL,   -- us_equity | us_option
    side             VARCHAR     NOT NULL,
    order_type       VARCHAR     NOT NULL,
    time_in_force    VARCHAR     NOT NULL,
    order_class      VARCHAR     NOT NULL,
    leg_role         VARCHAR,                -- take_profit | stop_loss for legs, else NULL
    parent_id        VARCHAR,
    qty              DOUBLE      NOT NULL,
    filled_qty       DOUBLE      NOT NULL,
    filled_avg_price DOUBLE,
    limit_price      DOUBLE,
    stop_price       DOUBLE,
    status           VARCHAR     NOT NULL,
    triggered        BOOLEAN     NOT NULL,   -- a stop-limit whose stop has been touched
    eligible_after   TIMESTAMPTZ,            -- fills only on market updates after this (no look-ahead)
    expires_at       TIMESTAMPTZ,            -- the session close for day orders
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    filled_at        TIMESTAMPTZ,
    canceled_at      TIMESTAMPTZ,
    expired_at       TIMESTAMPTZ,
    replaced_by      VARCHAR,
    replaces         VARCHAR,
    PRIMARY KEY (account, id)
);
CREATE INDEX sim_orders_client_id ON sim_orders (account, client_order_id);

CREATE TABLE sim_positions (
    account          VARCHAR     NOT NULL,
    symbol           VARCHAR     NOT NULL,
    qty              DOUBLE      NOT NULL,   -- signed: negative = short
    avg_entry_price  DOUBLE      NOT NULL,
    opened_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account, symbol)
);

-- Executions, and option expiries settled at intrinsic value (kind = 'expiry').
CREATE TABLE sim_fills (
    account          VARCHAR     NOT NULL,
    fill_id          VARCHAR     NOT NULL,
    run_id           VARCHAR,
    order_id         VARCHAR,
    client_order_id  VARCHAR,
    kind             VARCHAR     NOT NULL,   -- trade | expiry
    symbol           VARCHAR     NOT NULL,
    side             VARCHAR     NOT NULL,
    qty              DOUBLE      NOT NULL,
    price            DOUBLE      NOT NULL,
    commission       DOUBLE      NOT NULL,
    realized_pl      DOUBLE      NOT NULL,   -- P&L this fill closed, before fees
    ts               TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account, fill_id)
);

-- Latest known price (and VIX level, for option quotes) per symbol: what a process with
-- no market feed (the flatten job) prices and fills against.
CREATE TABLE sim_marks (
    account          VARCHAR     NOT NULL,
    symbol           VARCHAR     NOT NULL,
    ts               TIMESTAMPTZ NOT NULL,
    price            DOUBLE      NOT NULL,
    vix              DOUBLE,
    PRIMARY KEY (account, symbol)
);
