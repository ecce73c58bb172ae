-- Predictions have one home: rl_predictions (migration 0300), written by the metrics
-- tracker for the session, the backtests and SignalModel.flush_predictions alike.
DROP TABLE IF EXISTS signal_predictions;
