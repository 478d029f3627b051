-- The wallet each session signs with (ExecutionSessionEvent.wallet_address), so a pending swap
-- sent from it can be matched to its tenant for sandwich-threat alerts.
ALTER TABLE strategy.sessions ADD COLUMN wallet_address text NOT NULL DEFAULT '';
CREATE INDEX sessions_wallet ON strategy.sessions (lower(wallet_address)) WHERE wallet_address <> '';
