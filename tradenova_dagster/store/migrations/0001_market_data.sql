-- Market data: 1-minute bars per symbol and session day, and the per-day market context.
-- Prices may be NULL: bars are stored as the source delivered them (nothing is lost),
-- and market_bars_quality says whether the day is fit to trade.
CREATE TABLE market_bars (
    symbol    VARCHAR     NOT NULL,
    day       DATE        NOT NULL,   -- the New York session date the bar belongs to
    ts        TIMESTAMPTZ NOT NULL,   -- bar start, UTC
    open      DOUBLE,
    high      DOUBLE,
    low       DOUBLE,
    close     DOUBLE,
    volume    DOUBLE,
    source    VARCHAR     NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts)
);
CREATE INDEX market_bars_symbol_day ON market_bars (symbol, day);

-- Outcome of the quality checks per (symbol, day): the session refuses to trade a day
-- whose bars failed (DESIGN.md §3, asset checks on market_bars).
CREATE TABLE market_bars_quality (
    symbol     VARCHAR     NOT NULL,
    day        DATE        NOT NULL,
    passed     BOOLEAN     NOT NULL,
    failures   VARCHAR     NOT NULL,  -- JSON list of failed checks with details
    checked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, day)
);

-- What is known about the market at the open of a session day (no look-ahead):
-- VIX and realised volatility come from the sessions before that day.
CREATE TABLE market_context (
    day                DATE    PRIMARY KEY,
    vix                DOUBLE  NOT NULL,  -- VIX close of the previous session
    iv_rank            DOUBLE  NOT NULL,  -- 0..100, VIX within its 252-session range
    realized_vol       DOUBLE  NOT NULL,  -- annualised, 20 sessions of daily closes
    underlying         VARCHAR NOT NULL,
    underlying_close   DOUBLE  NOT NULL,  -- previous session close of the underlying
    source             VARCHAR NOT NULL,
    computed_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
