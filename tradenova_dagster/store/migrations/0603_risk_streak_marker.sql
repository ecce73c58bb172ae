-- Following the ledger, risk derives the day's realised P&L, trades and loss streak from
-- the ledger's fills. What only risk knows is kept here: after a loss-streak halt is
-- cleared by hand, the day's round trips before this index no longer count to the streak.
ALTER TABLE risk_state ADD COLUMN streak_after INTEGER DEFAULT 0;
