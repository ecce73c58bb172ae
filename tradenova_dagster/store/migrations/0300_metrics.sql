-- Metrics: what the trading system did, per account and run (DESIGN.md §3, issue 6).
--
-- Every table carries `account` (`sim:default`, `backtest:<id>`, `alpaca_paper:<id>`, ...)
-- so that backtests never mix with paper or live, `run_id` (nullable: the Dagster run
-- or replay that wrote the row), and `day`: the New York session date of the row's
-- time, computed when the row is written, so that per-day queries need no time-zone
-- arithmetic. Times are UTC.

-- Order snapshots, appended each time the session submits or sees an order change; the
-- last row per (account, client_order_id) is the order's latest known state.
CREATE TABLE orders (
    account           VARCHAR     NOT NULL,
    run_id            VARCHAR,
    ts                TIMESTAMPTZ NOT NULL,
    day               DATE        NOT NULL,
    client_order_id   VARCHAR     NOT NULL,
    broker_order_id   VARCHAR,
    symbol            VARCHAR     NOT NULL,
    asset_class       VARCHAR     NOT NULL,
    side              VARCHAR     NOT NULL,  -- buy | sell
    qty               DOUBLE      NOT NULL,
    order_type        VARCHAR     NOT NULL,
    time_in_force     VARCHAR     NOT NULL,
    order_class       VARCHAR     NOT NULL,
    limit_price       DOUBLE,
    stop_price        DOUBLE,
    take_profit_price DOUBLE,
    stop_loss_price   DOUBLE,
    status            VARCHAR     NOT NULL,
    filled_qty        DOUBLE      NOT NULL,
    filled_avg_price  DOUBLE,
    agent             VARCHAR,
    reason            VARCHAR,
    recorded_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX orders_account_day ON orders (account, day);
CREATE INDEX orders_account_client_id ON orders (account, client_order_id);

-- Executions as the broker reported them.
CREATE TABLE fills (
    account         VARCHAR     NOT NULL,
    run_id          VARCHAR,
    ts              TIMESTAMPTZ NOT NULL,
    day             DATE        NOT NULL,
    order_id        VARCHAR     NOT NULL,
    client_order_id VARCHAR,
    symbol          VARCHAR     NOT NULL,
    side            VARCHAR     NOT NULL,  -- buy | sell
    qty             DOUBLE      NOT NULL,
    price           DOUBLE      NOT NULL,
    commission      DOUBLE      NOT NULL,
    notional        DOUBLE      NOT NULL,  -- qty × price × multiplier (100 for options)
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX fills_account_day ON fills (account, day);

-- Round trips: one row per closed position (or closed part of one). `day` is the New
-- York date of exit_time: the day whose P&L the trade counts towards. `pnl` is net, as
-- the caller computed it; `commission` is informative and is not subtracted again.
CREATE TABLE trades (
    trade_id    VARCHAR     PRIMARY KEY,
    account     VARCHAR     NOT NULL,
    run_id      VARCHAR,
    day         DATE        NOT NULL,
    symbol      VARCHAR     NOT NULL,  -- the underlying (or the equity traded)
    contract    VARCHAR,               -- OCC option symbol, NULL for equities
    side        VARCHAR     NOT NULL,  -- long | short
    qty         DOUBLE      NOT NULL,
    entry_time  TIMESTAMPTZ NOT NULL,
    exit_time   TIMESTAMPTZ NOT NULL,
    entry_price DOUBLE      NOT NULL,
    exit_price  DOUBLE      NOT NULL,
    pnl         DOUBLE      NOT NULL,
    commission  DOUBLE      NOT NULL,
    agent       VARCHAR     NOT NULL,
    exit_reason VARCHAR,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX trades_account_day ON trades (account, day);
CREATE INDEX trades_account_agent ON trades (account, agent);

-- Mark-to-market equity through the session (one row per bar, or per monitor tick).
CREATE TABLE equity_curve (
    account         VARCHAR     NOT NULL,
    run_id          VARCHAR,
    ts              TIMESTAMPTZ NOT NULL,
    day             DATE        NOT NULL,
    equity          DOUBLE      NOT NULL,
    cash            DOUBLE      NOT NULL,
    positions_value DOUBLE      NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX equity_curve_account_day ON equity_curve (account, day);

-- Every output of the RL signal: the raw policy action, the EMA-smoothed one, and the
-- decision the smoothed action maps to (< -0.3 BUY_PUT, > 0.3 BUY_CALL, else FLAT).
CREATE TABLE rl_predictions (
    account         VARCHAR     NOT NULL,
    run_id          VARCHAR,
    ts              TIMESTAMPTZ NOT NULL,
    day             DATE        NOT NULL,
    model           VARCHAR     NOT NULL,
    symbol          VARCHAR,
    raw_action      DOUBLE      NOT NULL,
    smoothed_action DOUBLE      NOT NULL,
    decision        VARCHAR     NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX rl_predictions_account_day ON rl_predictions (account, day);

-- What an agent wanted to do and whether the risk framework let it.
CREATE TABLE agent_decisions (
    account     VARCHAR     NOT NULL,
    run_id      VARCHAR,
    ts          TIMESTAMPTZ NOT NULL,
    day         DATE        NOT NULL,
    agent       VARCHAR     NOT NULL,
    symbol      VARCHAR,
    signal      VARCHAR     NOT NULL,  -- BUY_CALL | BUY_PUT | FLAT
    allowed     BOOLEAN     NOT NULL,
    reason      VARCHAR     NOT NULL,
    risk_level  VARCHAR,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX agent_decisions_account_day ON agent_decisions (account, day);

-- One row per generated daily report; regenerating a day replaces its row.
CREATE TABLE daily_reports (
    account          VARCHAR     NOT NULL,
    day              DATE        NOT NULL,
    run_id           VARCHAR,
    html_path        VARCHAR     NOT NULL,
    day_pnl          DOUBLE      NOT NULL,
    day_trades       INTEGER     NOT NULL,
    day_win_rate     DOUBLE,
    window_days      INTEGER     NOT NULL,
    window_pnl       DOUBLE      NOT NULL,
    window_sharpe    DOUBLE,
    window_max_drawdown DOUBLE   NOT NULL,
    metrics          VARCHAR     NOT NULL,  -- JSON: every number in the report
    generated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account, day)
);
