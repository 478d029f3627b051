-- The fair-ordering log: one hash-chained, signed entry per fair-ordering transaction, numbered
-- per chain across every tenant (domain/ordering.py has the canonical form). It is published in
-- full (GET /ordering/<chain id>), so it holds no tenant: only the transaction hash, when it
-- arrived and the links. Entries are never updated or deleted (an erased tenant's transactions
-- stay in the chain, as hashes); the row of the protected transaction says whose it was.
CREATE TABLE execution.ordering_log (
    chain_id               bigint NOT NULL,
    sequence               bigint NOT NULL CHECK (sequence > 0),
    tx_hash                text   NOT NULL,
    received_at_unix_nanos bigint NOT NULL,
    prev_hash              text   NOT NULL,
    entry_hash             text   NOT NULL,
    signature              text   NOT NULL,
    key_id                 text   NOT NULL,
    PRIMARY KEY (chain_id, sequence),
    UNIQUE (chain_id, tx_hash)
);
-- Append-only for the service's own roles: a bug (or an intruder with the service's login) cannot
-- rewrite an entry; only the owner could, and verification would show it.
REVOKE UPDATE, DELETE, TRUNCATE ON execution.ordering_log FROM execution_app, execution_platform;
