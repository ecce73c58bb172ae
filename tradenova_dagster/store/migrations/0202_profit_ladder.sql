-- Take-profit ladder state per open position, so a restarted session neither fires a
-- level twice nor forgets that the trailing stop is armed. A row is deleted when its
-- position is fully exited.
CREATE TABLE profit_ladder (
    account       VARCHAR     NOT NULL,
    symbol        VARCHAR     NOT NULL,
    side          VARCHAR     NOT NULL,   -- long | short
    entry_price   DOUBLE      NOT NULL,
    initial_qty   BIGINT      NOT NULL,
    remaining_qty BIGINT      NOT NULL,
    fired_levels  VARCHAR     NOT NULL,   -- JSON list of level names already fired
    best_price    DOUBLE      NOT NULL,   -- most favourable price since entry
    trail_armed   BOOLEAN     NOT NULL,
    opened_at     TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    run_id        VARCHAR,
    PRIMARY KEY (account, symbol)
);
