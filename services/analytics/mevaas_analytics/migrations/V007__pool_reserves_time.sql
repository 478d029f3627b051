-- When each pool's recorded reserves were observed (their block's timestamp), so a price a
-- restarted replica quotes from them carries its time like one from the live feed. NULL for rows
-- recorded before this column existed, until the pool's next update.
ALTER TABLE analytics.pool_reserves ADD COLUMN observed_at timestamptz;
