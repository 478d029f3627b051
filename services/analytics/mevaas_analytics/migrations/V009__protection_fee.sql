-- The fee execution priced each protected transaction with when it accepted it (the tenant's plan
-- then, mevaas_core.protection_fees; ProtectedTransactionEvent.protection_fee): the invoice bills
-- this recorded figure, not the plan in force at invoice time. NULL / '' currency: not priced at
-- acceptance (recorded before execution priced them, or its plan was unknown there), billed with
-- the plan at invoice time.
ALTER TABLE analytics.protected_transactions
    ADD COLUMN protection_fee numeric CHECK (protection_fee >= 0),
    ADD COLUMN fair_ordering_fee numeric CHECK (fair_ordering_fee >= 0),
    ADD COLUMN fee_currency text NOT NULL DEFAULT '';
