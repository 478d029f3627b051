-- A cross-chain leg that landed alone is unwound by a reverse swap on its chain, recorded as one
-- more leg of the same execution: `unwinds` is the index of the leg it reverses (NULL for the
-- trade's own legs).
ALTER TABLE execution.execution_legs ADD COLUMN unwinds integer;
