"""Idempotency keys for mutations: a retried request with the same key returns the first
response and changes nothing; the same key with a different request is ALREADY_EXISTS.

Each service keeps a table with this shape in its own schema (see `IDEMPOTENCY_TABLE_SQL`), and
calls `replay_or_none` then `remember` inside the same transaction as the mutation, so a crash
between the write and the record is impossible.
"""

from __future__ import annotations

import hashlib
from typing import TypeVar

import asyncpg
from google.protobuf.message import Message

from mevaas_core.errors import AlreadyExists

IDEMPOTENCY_TABLE_SQL = """
CREATE TABLE {schema}.idempotency_keys (
    tenant_id     text        NOT NULL,
    method        text        NOT NULL,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,
    response      bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, method, key)
);
"""

ResponseT = TypeVar("ResponseT", bound=Message)


def request_fingerprint(request: Message) -> bytes:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).digest()


async def replay_or_none(
    conn: asyncpg.Connection,
    schema: str,
    *,
    tenant_id: str,
    method: str,
    key: str,
    request: Message,
    response_type: type[ResponseT],
) -> ResponseT | None:
    """The stored response for this key, or None if the key is new.

    Takes a transaction-scoped advisory lock on the key so two concurrent retries serialise:
    the second waits for the first to commit and then replays its response.
    """
    if not key:
        return None
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{schema}:{tenant_id}:{method}:{key}"
    )
    row = await conn.fetchrow(
        f"SELECT request_hash, response FROM {schema}.idempotency_keys "
        "WHERE tenant_id = $1 AND method = $2 AND key = $3",
        tenant_id,
        method,
        key,
    )
    if row is None:
        return None
    if bytes(row["request_hash"]) != request_fingerprint(request):
        raise AlreadyExists("idempotency key was already used with a different request")
    response = response_type()
    response.ParseFromString(bytes(row["response"]))
    return response


async def remember(
    conn: asyncpg.Connection,
    schema: str,
    *,
    tenant_id: str,
    method: str,
    key: str,
    request: Message,
    response: Message,
) -> None:
    if not key:
        return
    await conn.execute(
        f"INSERT INTO {schema}.idempotency_keys (tenant_id, method, key, request_hash, response) "
        "VALUES ($1, $2, $3, $4, $5)",
        tenant_id,
        method,
        key,
        request_fingerprint(request),
        response.SerializeToString(deterministic=True),
    )


class IdempotentCall:
    """One mutation's idempotency scope (tenant, RPC, the request's `idempotency_key`), so a handler
    says `replay` and `remember` without repeating the scope at each step."""

    def __init__(
        self, schema: str, *, tenant_id: str, method: str, request: Message, key: str | None = None
    ) -> None:
        self.schema = schema
        self.tenant_id = tenant_id
        self.method = method
        self.request = request
        self.key = key if key is not None else str(getattr(request, "idempotency_key", ""))

    async def replay(self, conn: asyncpg.Connection, response_type: type[ResponseT]) -> ResponseT | None:
        return await replay_or_none(
            conn,
            self.schema,
            tenant_id=self.tenant_id,
            method=self.method,
            key=self.key,
            request=self.request,
            response_type=response_type,
        )

    async def remember(self, conn: asyncpg.Connection, response: Message) -> None:
        await remember(
            conn,
            self.schema,
            tenant_id=self.tenant_id,
            method=self.method,
            key=self.key,
            request=self.request,
            response=response,
        )
