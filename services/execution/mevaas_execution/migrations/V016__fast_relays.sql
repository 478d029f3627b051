-- Fast mode (protection/domain/relays.py): the transaction goes to every relay of its chain at
-- once, and each attempt records what each relay answered ([{relay, accepted, targetBlock,
-- reason}], the last attempt's). Not fast: only the primary relay, nothing recorded here.
ALTER TABLE execution.protected_transactions
    ADD COLUMN fast boolean NOT NULL DEFAULT false,
    ADD COLUMN relay_outcomes jsonb;
