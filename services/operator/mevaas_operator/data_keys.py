"""A dedicated tenant's data key, fetched from the platform's execution for the Secret its
execution worker reads (workers.secrets.dataKey): the operator never holds the KEK, only the one
tenant's key on its way into the tenant's namespace.

The request (rpc.keys.tenant_data_key, which only the operator's bus identity may send) carries a
key pair made for it, and execution seals its answer to that key (mevaas_core.sealed), so the
data key crosses the bus only encrypted. Execution creates the key on the first request; every
reconcile asks again and rewrites the Secret, so a data key that changed in the platform reaches
the tenant at the next resync."""

from __future__ import annotations

from collections.abc import Callable

import nats
from nats.aio.client import Client as NatsClient

from mevaas.execution.v1 import execution_pb2
from mevaas_core import sealed, subjects
from mevaas_core.bus import (
    HEADER_CONTENT_TYPE,
    HEADER_SERVICE_ERROR,
    HEADER_SERVICE_ERROR_CODE,
    HEADER_TENANT,
    content_type_for,
)


class DataKeyError(Exception):
    """No answer, an error answer, or an answer that does not open: retried by the reconcile."""


class DataKeyCourier:
    def __init__(self, connection: Callable[[], NatsClient | None], *, timeout: float = 10.0) -> None:
        # The operator's one NATS connection (its tenant-event consumer's), once it is up.
        self._connection = connection
        self._timeout = timeout

    async def ring(self, tenant_id: str) -> tuple[str, str]:
        """(key id, the worker's EXECUTION_KEK ring `tdk-<hex>:<base64>`) for the tenant."""
        nc = self._connection()
        if nc is None:
            raise DataKeyError("not connected to NATS")
        recipient = sealed.Recipient()
        request = execution_pb2.TenantDataKeyRequest(recipient_public_key=recipient.public_key)
        headers = {HEADER_TENANT: tenant_id, HEADER_CONTENT_TYPE: content_type_for(request)}
        try:
            reply = await nc.request(
                subjects.KEYS_TENANT_DATA_KEY,
                request.SerializeToString(),
                timeout=self._timeout,
                headers=headers,
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise DataKeyError(f"tenant data key: {exc.__class__.__name__}") from exc
        reply_headers = reply.headers or {}
        if HEADER_SERVICE_ERROR in reply_headers:
            code = reply_headers.get(HEADER_SERVICE_ERROR_CODE, "500")
            raise DataKeyError(
                f"tenant data key: execution answered {code}: {reply_headers[HEADER_SERVICE_ERROR]}"
            )
        try:
            answer = execution_pb2.TenantDataKeyResponse.FromString(reply.data)
            ring = recipient.open(
                sealed.Sealed(answer.sender_public_key, answer.sealed_ring),
                subjects.tenant_data_key_context(tenant_id, answer.key_id),
            ).decode()
        except (sealed.SealError, ValueError) as exc:
            raise DataKeyError(f"tenant data key: the answer does not open: {exc}") from exc
        if not ring.startswith(f"{answer.key_id}:"):
            raise DataKeyError("tenant data key: the sealed ring names another key")
        return answer.key_id, ring
