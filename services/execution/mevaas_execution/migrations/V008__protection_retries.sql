-- Protected transactions are resent every block until their last block: how often, for which
-- block last, and whether they came through the Protect RPC (JSON-RPC) or the gRPC API.
ALTER TABLE execution.protected_transactions
    ADD COLUMN attempts          integer NOT NULL DEFAULT 0,
    ADD COLUMN last_target_block bigint  NOT NULL DEFAULT 0,
    ADD COLUMN source            text    NOT NULL DEFAULT 'grpc' CHECK (source IN ('grpc', 'rpc'));
