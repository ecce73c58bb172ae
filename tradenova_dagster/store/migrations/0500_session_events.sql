-- What each job of the trading day did: warmup checks, session start/stop, monitor
-- heartbeats, flatten results. One row per event, detail as JSON.
CREATE TABLE session_events (
    account  VARCHAR     NOT NULL,
    run_id   VARCHAR,
    ts       TIMESTAMPTZ NOT NULL DEFAULT now(),
    job      VARCHAR     NOT NULL,   -- warmup | session | flatten | monitor | backtest
    kind     VARCHAR     NOT NULL,   -- e.g. ok, heartbeat, halted, stopped, interrupted, flat, not_flat
    detail   VARCHAR     NOT NULL    -- JSON
);
CREATE INDEX session_events_account_ts ON session_events (account, ts);
