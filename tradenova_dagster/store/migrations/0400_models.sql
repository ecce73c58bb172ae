-- Trained models, their out-of-sample evaluations, which one trades, and what it predicted.
-- A model and its evaluation are facts about the model, shared by every account; the
-- promotion (which model an account trades) and the predictions are per account.
CREATE TABLE models (
    model_id           VARCHAR     PRIMARY KEY,
    agent              VARCHAR     NOT NULL,  -- ppo | grpo
    symbol             VARCHAR     NOT NULL,
    path               VARCHAR     NOT NULL,  -- folder with model.zip, vecnormalize.pkl, meta.json
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    timesteps          BIGINT      NOT NULL,
    seed               INTEGER,
    train_start        DATE        NOT NULL,
    train_end          DATE        NOT NULL,
    n_train_days       INTEGER     NOT NULL,
    env_steps_per_s    DOUBLE,
    final_train_reward DOUBLE,
    meta               VARCHAR     NOT NULL,  -- JSON: hyperparameters, env config, training days
    run_id             VARCHAR
);

CREATE TABLE model_evaluations (
    model_id     VARCHAR     NOT NULL,
    evaluated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    eval_start   DATE        NOT NULL,
    eval_end     DATE        NOT NULL,
    n_days       INTEGER     NOT NULL,
    promotable   BOOLEAN     NOT NULL,
    reason       VARCHAR     NOT NULL,
    metrics      VARCHAR     NOT NULL,  -- JSON: per policy (model and baselines) metrics
    run_id       VARCHAR
);
CREATE INDEX model_evaluations_model ON model_evaluations (model_id, evaluated_at);

-- The latest row per (account, symbol) is the model that account trades; 'global' is the
-- default for every account that has no promotion of its own.
CREATE TABLE model_promotions (
    account     VARCHAR     NOT NULL,
    symbol      VARCHAR     NOT NULL,
    model_id    VARCHAR     NOT NULL,
    promoted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    reason      VARCHAR     NOT NULL,
    run_id      VARCHAR
);

CREATE TABLE signal_predictions (
    account         VARCHAR     NOT NULL,
    run_id          VARCHAR,
    model_id        VARCHAR     NOT NULL,
    symbol          VARCHAR     NOT NULL,
    ts              TIMESTAMPTZ NOT NULL,  -- the bar the prediction was made on (its start)
    raw_action      DOUBLE      NOT NULL,
    smoothed_action DOUBLE      NOT NULL,
    decision        VARCHAR     NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX signal_predictions_account_ts ON signal_predictions (account, ts);
