-- The fee billed for a protected transaction, priced when it was accepted with the tenant's plan
-- then (mevaas_core.protection_fees): the protection fee, plus the fair-ordering fee in that mode.
-- Exact decimals in the plan's currency; '' currency: not priced (refused at ingress, or recorded
-- before this column existed, or the plan was unknown).
ALTER TABLE execution.protected_transactions
    ADD COLUMN protection_fee numeric NOT NULL DEFAULT 0 CHECK (protection_fee >= 0),
    ADD COLUMN fair_ordering_fee numeric NOT NULL DEFAULT 0 CHECK (fair_ordering_fee >= 0),
    ADD COLUMN fee_currency text NOT NULL DEFAULT '',
    ADD COLUMN fee_plan text NOT NULL DEFAULT '';
