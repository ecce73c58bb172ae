-- Risk framework state, one row per account (DESIGN.md §4). Warmup, session, monitor and a
-- restarted session all read and write this row, so they agree on the day's losses.
CREATE TABLE risk_state (
    account             VARCHAR     PRIMARY KEY,
    day                 DATE,                      -- session day of the daily counters; NULL before the first start_day
    start_of_day_equity DOUBLE      NOT NULL,
    realized_pnl        DOUBLE      NOT NULL,      -- today's, from record_trade
    unrealized_json     VARCHAR     NOT NULL,      -- JSON {symbol: unrealised P&L}; "*" = an unattributed total
    unrealized_pnl      DOUBLE      NOT NULL,      -- sum of unrealized_json, for people reading the table
    broker_equity       DOUBLE,                    -- last equity the broker reported today (NULL if none)
    peak_equity         DOUBLE      NOT NULL,      -- highest equity seen, across days (max drawdown)
    trades_today        INTEGER     NOT NULL,
    loss_streak         INTEGER     NOT NULL,      -- losing trades in a row today
    halted              BOOLEAN     NOT NULL,
    halt_rule           VARCHAR,                   -- daily_loss | loss_streak | max_drawdown | manual
    halt_scope          VARCHAR,                   -- day (cleared by the next day's start) | stop (until cleared)
    halt_reason         VARCHAR,
    halted_at           TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ NOT NULL
);

-- Every refusal, halt and halt clearance, with the rule, the values it compared and why.
CREATE TABLE risk_events (
    account     VARCHAR     NOT NULL,
    run_id      VARCHAR,
    ts          TIMESTAMPTZ NOT NULL,
    kind        VARCHAR     NOT NULL,   -- refusal | halt | clear
    rule        VARCHAR     NOT NULL,
    symbol      VARCHAR,
    values_json VARCHAR     NOT NULL,   -- JSON object: the values the rule compared
    reason      VARCHAR     NOT NULL
);
CREATE INDEX risk_events_account_ts ON risk_events (account, ts);
