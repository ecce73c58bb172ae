-- Market data keyed by the source it came from (issue 15): a day once replayed on
-- synthetic data must never serve a later backtest of the real day (measured: the
-- synthetic VIX 15.81 served 2022-10-11 instead of the real prior close 32.45, and the
-- session entered through the VIX lockout). Bars, their quality verdicts and the market
-- context are now (source, symbol, day) facts; rows stored before this migration keep
-- the source they recorded.
CREATE TABLE market_bars_by_source (
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
    PRIMARY KEY (source, symbol, ts)
);
INSERT INTO market_bars_by_source
    SELECT symbol, day, ts, open, high, low, close, volume, source, loaded_at FROM market_bars;
DROP INDEX market_bars_symbol_day;
DROP TABLE market_bars;
ALTER TABLE market_bars_by_source RENAME TO market_bars;
CREATE INDEX market_bars_source_symbol_day ON market_bars (source, symbol, day);

-- A verdict judges the bars of one source; an old verdict takes the source of the bars
-- it judged ('unknown' if those bars are gone, so no source's day is blocked by it).
CREATE TABLE market_bars_quality_by_source (
    source     VARCHAR     NOT NULL,
    symbol     VARCHAR     NOT NULL,
    day        DATE        NOT NULL,
    passed     BOOLEAN     NOT NULL,
    failures   VARCHAR     NOT NULL,  -- JSON list of failed checks with details
    checked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, symbol, day)
);
INSERT INTO market_bars_quality_by_source
    SELECT coalesce((SELECT any_value(b.source) FROM market_bars b WHERE b.symbol = q.symbol AND b.day = q.day),
                    'unknown'),
           q.symbol, q.day, q.passed, q.failures, q.checked_at
    FROM market_bars_quality q;
DROP TABLE market_bars_quality;
ALTER TABLE market_bars_quality_by_source RENAME TO market_bars_quality;

CREATE TABLE market_context_by_source (
    source             VARCHAR NOT NULL,
    day                DATE    NOT NULL,
    vix                DOUBLE  NOT NULL,  -- VIX close of the previous session
    iv_rank            DOUBLE  NOT NULL,  -- 0..100, VIX within its 252-session range
    realized_vol       DOUBLE  NOT NULL,  -- annualised, 20 sessions of daily closes
    underlying         VARCHAR NOT NULL,
    underlying_close   DOUBLE  NOT NULL,  -- previous session close of the underlying
    computed_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, day)
);
INSERT INTO market_context_by_source
    SELECT source, day, vix, iv_rank, realized_vol, underlying, underlying_close, computed_at FROM market_context;
DROP TABLE market_context;
ALTER TABLE market_context_by_source RENAME TO market_context;
