-- The kill switch: the current setting per account ('*' = every account except backtests)
-- and every change ever made, so "who turned it on, when and why" has an answer.
CREATE TABLE kill_switch (
    account VARCHAR     PRIMARY KEY,
    is_on   BOOLEAN     NOT NULL,
    reason  VARCHAR     NOT NULL,
    set_by  VARCHAR     NOT NULL,
    set_at  TIMESTAMPTZ NOT NULL,
    run_id  VARCHAR
);

CREATE TABLE kill_switch_history (
    account VARCHAR     NOT NULL,
    is_on   BOOLEAN     NOT NULL,
    reason  VARCHAR     NOT NULL,
    set_by  VARCHAR     NOT NULL,
    set_at  TIMESTAMPTZ NOT NULL,
    run_id  VARCHAR
);
CREATE INDEX kill_switch_history_account_ts ON kill_switch_history (account, set_at);
