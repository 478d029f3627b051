"""The treasury: what every wallet and executor contract of a tenant holds on chain, the ledger of
every movement the platform booked, and whether the two agree."""
