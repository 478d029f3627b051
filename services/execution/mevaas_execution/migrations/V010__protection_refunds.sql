-- The order-flow auction's outcome on a protected transaction: the backrun bundled right after
-- it and what the executor contract refunded to its sender in the same transaction (exact base
-- units of refund_token; gas_refund is the part of refund_amount that paid back the user's gas).
ALTER TABLE execution.protected_transactions
    ADD COLUMN backrun_tx_hash text,
    ADD COLUMN backrun_profit  numeric(78, 0),
    ADD COLUMN refund_token    text,
    ADD COLUMN refund_amount   numeric(78, 0),
    ADD COLUMN gas_refund      numeric(78, 0);
