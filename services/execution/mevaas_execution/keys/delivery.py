"""The answer to rpc.keys.tenant_data_key: a tenant's data key, created if it has none, sealed to
the requester's one-time X25519 key (mevaas_core.sealed). The operator asks it for each dedicated
tenant and writes the ring into the Secret the tenant's execution worker reads, so no SRE handles
the key; the bus permissions let only the operator ask (mevaas_core.bus.identities)."""

from __future__ import annotations

import asyncpg

from mevaas.execution.v1 import execution_pb2
from mevaas_chain.keystore import KeyRing
from mevaas_core import sealed, subjects
from mevaas_core.bus import RequestContext, ServiceError
from mevaas_core.db import tenant_transaction
from mevaas_execution.keys import TenantKeys, ring_spec


class TenantKeyDelivery:
    def __init__(self, pool: asyncpg.Pool, keyring: KeyRing) -> None:
        self._pool = pool
        self._keys = TenantKeys(keyring)

    async def answer(
        self, request: execution_pb2.TenantDataKeyRequest, ctx: RequestContext
    ) -> execution_pb2.TenantDataKeyResponse:
        if not ctx.tenant_id:
            raise ServiceError(400, "the request names no tenant")
        if len(request.recipient_public_key) != sealed.PUBLIC_KEY_BYTES:
            raise ServiceError(400, f"recipient_public_key must be {sealed.PUBLIC_KEY_BYTES} bytes")
        async with tenant_transaction(self._pool, ctx.tenant_id) as conn:
            key = await self._keys.tenant_key(conn, ctx.tenant_id, create=True)
        box = sealed.seal(
            request.recipient_public_key,
            ring_spec(key).encode(),
            subjects.tenant_data_key_context(ctx.tenant_id, key.kek_id),
        )
        return execution_pb2.TenantDataKeyResponse(
            key_id=key.kek_id, sender_public_key=box.sender_public_key, sealed_ring=box.ciphertext
        )
