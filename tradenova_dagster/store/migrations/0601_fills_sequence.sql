-- The ledger folds an account's fills in the order it recorded them. Times cannot give
-- that order (an expiry is stamped at its close, a broker's fill time can precede a fill
-- recorded earlier), so each fill gets its account's next sequence number. Rows written
-- before this migration are numbered by (ts, fill_id).
ALTER TABLE fills ADD COLUMN seq BIGINT;
UPDATE fills SET seq = numbered.n
FROM (SELECT rowid AS r, row_number() OVER (PARTITION BY account ORDER BY ts, fill_id) - 1 AS n FROM fills) AS numbered
WHERE fills.rowid = numbered.r;
CREATE UNIQUE INDEX fills_account_seq ON fills (account, seq);
