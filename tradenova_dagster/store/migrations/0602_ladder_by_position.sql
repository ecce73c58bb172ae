-- The ladder keeps only its own state, per position (DESIGN.md §5): which levels fired,
-- the best price, whether the trail is armed. Quantity and entry price are the ledger's
-- (folded from fills) and are no longer copied here. A position is named by the id of the
-- fill that opened it, so a re-entry after a close starts a fresh ladder.
--
-- Rows of the old layout keep their state under 'legacy:<symbol>'; a session adopts one
-- for the position it holds in that symbol (ProfitManager.follow), then re-keys it.
CREATE TABLE ladder_state (
    account      VARCHAR     NOT NULL,
    position_id  VARCHAR     NOT NULL,
    symbol       VARCHAR     NOT NULL,
    fired_levels VARCHAR     NOT NULL,   -- JSON list of level names already fired
    best_price   DOUBLE      NOT NULL,   -- most favourable price since entry
    trail_armed  BOOLEAN     NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    run_id       VARCHAR,
    PRIMARY KEY (account, position_id)
);
INSERT INTO ladder_state
SELECT account, 'legacy:' || symbol, symbol, fired_levels, best_price, trail_armed, updated_at, run_id
FROM profit_ladder;
DROP TABLE profit_ladder;
