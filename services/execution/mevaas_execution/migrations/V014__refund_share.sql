-- The share of a winning backrun's profit the protected transaction's sender is refunded, in basis
-- points, fixed when the transaction was accepted: the tenant plan's backrun_refund_bps, or the
-- platform default (OFA_REFUND_BPS). It is the share its order-flow auction offered searchers and
-- the one the executor contract pays (refund_amount - gas_refund = backrun_profit * share / 10000).
-- NULL: no auction was opened for it (fair ordering, auctions off, refused at ingress, or
-- accepted before this column existed).
ALTER TABLE execution.protected_transactions
    ADD COLUMN refund_share_bps integer CHECK (refund_share_bps BETWEEN 0 AND 10000);
