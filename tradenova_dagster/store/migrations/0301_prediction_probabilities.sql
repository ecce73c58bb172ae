-- TradeNova's policies are categorical (PUT / FLAT / CALL): every prediction also keeps the
-- three probabilities of the EMA-smoothed distribution. smoothed_action is then the score
-- p_call - p_put that the ±0.3 thresholds turn into the decision, raw_action the score of
-- the bar's own (unsmoothed) distribution. NULL for a signal that has no distribution
-- (a scripted or continuous agent).
ALTER TABLE rl_predictions ADD COLUMN p_put DOUBLE;
ALTER TABLE rl_predictions ADD COLUMN p_flat DOUBLE;
ALTER TABLE rl_predictions ADD COLUMN p_call DOUBLE;
