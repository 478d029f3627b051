"""The Protect RPC: an Ethereum JSON-RPC endpoint over HTTP that wallets and bots point at
(``http://<host>/rpc/<chain id>/<API key>``, or ``/rpc/<chain id>`` with the key in an
``X-API-Key`` or ``Authorization: Bearer`` header).

``eth_sendRawTransaction`` goes private (validated here, then simulated, recorded and sent as a
bundle by ProtectionCommands); ``mevaas_getTransactionStatus`` answers a transaction's status
with its reason; ``eth_getTransactionCount(..., "pending")`` counts the sender's transactions in
flight here; reads pass through to the chain; anything else is refused (domain/jsonrpc.py).

``?mode=fair`` on the URL sends in fair-ordering mode: the answer to ``eth_sendRawTransaction`` is
still the hash (wallets need nothing else) and carries the signed receipt in a ``mevaas`` member
of the response object (``{"result": "0x..", "mevaas": {"orderingReceipt": {...}}}``); the
chain's whole ordering log and its public key are at ``GET /ordering/<chain id>``. ``?fast=true``
sends each private transaction to every relay of the chain at once (fast mode)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Histogram

from mevaas.execution.v1 import execution_pb2
from mevaas_chain.rawtx import DecodedTransaction, RawTransactionError, decode_signed
from mevaas_core import audit, jsoninput
from mevaas_core.auth import Principal, Role
from mevaas_core.errors import ResourceExhausted
from mevaas_core.grpckit.ratelimit import SharedRateLimiter, TenantRateLimiter
from mevaas_execution.chains import ChainGateway, ChainUnavailable
from mevaas_execution.protection import failures
from mevaas_execution.protection.access import ApiKeyAccess
from mevaas_execution.protection.commands import SANCTIONED, ProtectionCommands, Submission
from mevaas_execution.protection.domain import jsonrpc as j
from mevaas_execution.protection.status import status_view

SENDERS = frozenset({Role.OWNER, Role.ADMIN, Role.TRADER})
# The audit action of a transaction sent through the Protect RPC (its one mutation), named like an
# RPC's full name so the one trail reads the same.
SEND_ACTION = "/mevaas.execution.v1.ProtectRpc/eth_sendRawTransaction"
MAX_BODY_BYTES = 1024 * 1024
MAX_RAW_TX_BYTES = 128 * 1024

REQUESTS = Counter("protect_rpc_requests_total", "Protect RPC requests", ["method", "outcome"])
LATENCY = Histogram(
    "protect_rpc_seconds",
    "Protect RPC request latency",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


MODES = {
    "": execution_pb2.PROTECTION_MODE_PRIVATE_BUNDLE,
    "private": execution_pb2.PROTECTION_MODE_PRIVATE_BUNDLE,
    "fair": execution_pb2.PROTECTION_MODE_FAIR_ORDERING,
}
FAST = {"": False, "false": False, "0": False, "true": True, "1": True}


@dataclass(frozen=True, slots=True)
class Sending:
    """How the URL asks its transactions to be sent: the protection mode, and fast mode (to every
    relay of the chain at once)."""

    mode: int
    fast: bool


def sending(query: Mapping[str, str]) -> Sending:
    mode = MODES.get(query.get("mode", ""))
    if mode is None:
        raise j.JsonRpcError(j.INVALID_REQUEST, "mode must be fair or private", http_status=400)
    fast = FAST.get(query.get("fast", "").lower())
    if fast is None:
        raise j.JsonRpcError(j.INVALID_REQUEST, "fast must be true or false", http_status=400)
    if fast and mode == execution_pb2.PROTECTION_MODE_FAIR_ORDERING:
        raise j.JsonRpcError(
            j.INVALID_REQUEST,
            "fast is for private transactions (fair-ordering ones go as one bundle, in receipt order)",
            http_status=400,
        )
    return Sending(mode, fast)


@dataclass(frozen=True, slots=True)
class Extended:
    """A result with extra members for the response object (the fair-ordering receipt)."""

    value: Any
    extra: dict[str, Any]


def _hex_bytes(value: Any, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) < 4 or len(value) % 2:
        raise j.JsonRpcError(j.INVALID_PARAMS, f"{what} must be 0x-prefixed hex bytes")
    if len(value) > 2 + 2 * limit:
        raise j.JsonRpcError(j.INVALID_PARAMS, f"{what} must be at most {limit} bytes")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise j.JsonRpcError(j.INVALID_PARAMS, f"{what} must be 0x-prefixed hex bytes") from None


class ProtectRpc:
    def __init__(
        self,
        commands: ProtectionCommands,
        gateway: ChainGateway,
        access: ApiKeyAccess,
        *,
        default_blocks: int = 25,
        audit_sink: audit.AuditSink | None = None,
        limiter: SharedRateLimiter | None = None,
    ) -> None:
        self.commands = commands
        self.gateway = gateway
        self.access = access
        self.audit_sink = audit_sink
        # The tenant's plan holds here as at its gRPC calls: the fleet's shared bucket when given,
        # else this process's own.
        self._shared_limiter = limiter
        self._limiter = TenantRateLimiter()
        self.default_blocks = default_blocks
        self.port = 0
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[failures.json_rpc_errors])
        app.router.add_post("/rpc/{chain_id}", self._handle)
        app.router.add_post("/rpc/{chain_id}/{api_key}", self._handle)
        app.router.add_get("/ordering/{chain_id}", self._ordering_log)
        return app

    async def start(self, host: str, port: int) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.access.close()

    # HTTP --------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        """Read the requests, then check the endpoint and the caller: a failure of the whole
        request (unknown chain, bad key, tenancy down, rate limited) answers every request in it
        with its own id (failures.response); a call's own error is its own reply."""
        try:
            body = jsoninput.loads(await request.read())
        except jsoninput.JsonInputError as exc:
            return failures.response(
                failures.Failure(j.PARSE_ERROR, f"the body is not JSON: {exc}"), None, batch=False
            )
        except ValueError:
            return failures.response(
                failures.Failure(j.PARSE_ERROR, "the body is not JSON"), None, batch=False
            )
        try:
            items, is_batch = j.batch(body)
        except j.JsonRpcError as exc:
            return failures.response(failures.failure(exc), None, batch=False)
        ids = [j.echo_id(item) for item in items]
        try:
            chain_id = self._chain_id_of(request)
            mode = sending(request.query)
            principal = await self.access.principal(_api_key(request), request.remote or "")
        except Exception as exc:
            return failures.response(failures.failure(exc), ids, batch=is_batch)
        request_id = request.headers.get("X-Request-Id", "")[:128]
        answered = await asyncio.gather(
            *(self._one(principal, chain_id, item, mode, request_id) for item in items)
        )
        replies = [reply for reply, _ in answered]
        failed = [fail for _, fail in answered if fail is not None]
        # The HTTP status is the calls' when all of them failed alike (a single call that met an
        # outage is 503; a batch that all did, too); a batch with any answer is 200.
        status, headers = 200, {}
        if len(failed) == len(answered) and len({f.http_status for f in failed}) == 1:
            status, headers = failed[0].http_status, failed[0].headers()
        return web.json_response(replies if is_batch else replies[0], status=status, headers=headers)

    def _chain_id_of(self, request: web.Request) -> int:
        try:
            chain_id = int(request.match_info["chain_id"])
            self.gateway.chain(chain_id)
        except (ValueError, ChainUnavailable):
            raise j.JsonRpcError(
                j.INVALID_REQUEST,
                f"chain {request.match_info['chain_id'][:32]} is not served here",
                http_status=404,
            ) from None
        return chain_id

    async def _ordering_log(self, request: web.Request) -> web.Response:
        """The chain's ordering log (public: hashes, times and links, no tenant), a page at a time:
        ``?after=<sequence>&limit=<n>`` (at most 1000)."""
        try:
            chain_id = int(request.match_info["chain_id"])
            self.gateway.chain(chain_id)
            after, limit = int(request.query.get("after", "0")), int(request.query.get("limit", "1000"))
        except (ValueError, ChainUnavailable):
            return web.json_response({"error": "unknown chain, or after/limit not integers"}, status=404)
        if not 0 <= after < 2**63:
            # A sequence is a bigint: beyond it nothing is after, and PostgreSQL would refuse it.
            return web.json_response({"error": "after must be a sequence number, 0 to 2^63-1"}, status=400)
        return web.json_response(await self.commands.ordering.page(chain_id, after, limit))

    async def _one(
        self, principal: Principal, chain_id: int, item: Any, mode: Sending, request_id: str = ""
    ) -> tuple[dict[str, Any], failures.Failure | None]:
        reply, fail = await self._answer(principal, chain_id, item, mode)
        throttled = fail is not None and fail.http_status == 429
        if (
            self.audit_sink is not None
            and not throttled  # a throttled flood is counted in metrics, not recorded call by call
            and isinstance(item, dict)
            and item.get("method") == "eth_sendRawTransaction"
        ):
            self._audit_send(principal, chain_id, reply, request_id)
        return reply, fail

    def _audit_send(
        self, principal: Principal, chain_id: int, reply: dict[str, Any], request_id: str
    ) -> None:
        """Every transaction sent here, accepted, refused or denied, is in the audit trail."""
        assert self.audit_sink is not None
        error = reply.get("error")
        if error is None:
            outcome, target, details = audit.SUCCEEDED, f"protected_transactions/{reply.get('result')}", {}
        else:
            denied = error.get("code") == j.UNAUTHORIZED
            outcome = audit.DENIED if denied else audit.FAILED
            target, details = "", {"error": str(error.get("message", ""))[:256]}
        audit.submit_outside_grpc(
            self.audit_sink,
            service="execution",
            action=SEND_ACTION,
            principal=principal,
            target=target,
            outcome=outcome,
            request_id=request_id,
            details={"chain_id": str(chain_id), **details},
        )

    async def _answer(
        self, principal: Principal, chain_id: int, item: Any, mode: Sending
    ) -> tuple[dict[str, Any], failures.Failure | None]:
        started = time.perf_counter()
        method = item.get("method", "") if isinstance(item, dict) else ""
        label = _label(method)
        rid = j.echo_id(item)
        try:
            parsed = j.parse(item)
            await self._throttle(principal)
            value = await self._dispatch(principal, chain_id, parsed, mode)
            REQUESTS.labels(label, "ok").inc()
            if isinstance(value, Extended):
                return j.result(rid, value.value) | value.extra, None
            return j.result(rid, value), None
        except Exception as exc:
            REQUESTS.labels(label, "error").inc()
            fail = failures.failure(exc, f"Protect RPC {label}")
            return j.error(rid, fail.code, fail.message, fail.data), fail
        finally:
            LATENCY.labels(label).observe(time.perf_counter() - started)

    async def _throttle(self, principal: Principal) -> None:
        """One call of the tenant's plan, from the same bucket as its gRPC calls (the
        interceptor's key), so the Protect RPC is no way around the plan."""
        key, rate = f"tenant:{principal.tenant_id}", principal.rate_per_second
        if self._shared_limiter is not None:
            wait = await self._shared_limiter.try_acquire(key, rate, principal.burst)
        else:
            wait = self._limiter.try_acquire(key, rate, principal.burst)
        if wait > 0:
            raise ResourceExhausted(f"rate limit of {rate:g} calls/s exceeded", wait)

    # methods -----------------------------------------------------------------------------------

    async def _dispatch(self, principal: Principal, chain_id: int, request: j.Request, mode: Sending) -> Any:
        route = j.route(request.method)
        if route == "refused":
            raise j.JsonRpcError(
                j.METHOD_NOT_FOUND,
                f"{request.method} is not available on the Protect RPC (send signed transactions)",
            )
        if route == "read":
            return await self.gateway.chain(chain_id).rpc.request(request.method, request.params)
        if request.method == "eth_sendRawTransaction":
            return await self._send_raw(principal, chain_id, request, mode)
        handler = {
            "eth_chainId": self._chain_id,
            "eth_accounts": self._accounts,
            "mevaas_getTransactionStatus": self._status,
            "eth_getTransactionCount": self._transaction_count,
        }[request.method]
        return await handler(principal, chain_id, request)

    async def _chain_id(self, principal: Principal, chain_id: int, request: j.Request) -> Any:
        return hex(chain_id)

    async def _accounts(self, principal: Principal, chain_id: int, request: j.Request) -> Any:
        return []  # the Protect RPC holds no keys: clients sign their own transactions

    def decode(self, chain_id: int, value: Any) -> tuple[DecodedTransaction, bytes]:
        """The edge's checks, each a clear JSON-RPC error: hex, RLP, signature, chain id."""
        raw = _hex_bytes(value, "the raw transaction", MAX_RAW_TX_BYTES)
        try:
            decoded = decode_signed(raw)
        except RawTransactionError as exc:
            raise j.JsonRpcError(j.INVALID_PARAMS, f"not a signed transaction: {exc}") from None
        if decoded.chain_id is None:
            raise j.JsonRpcError(
                j.INVALID_PARAMS,
                "the transaction is not replay-protected (EIP-155): sign it for chain " + str(chain_id),
            )
        if decoded.chain_id != chain_id:
            raise j.JsonRpcError(
                j.INVALID_PARAMS,
                f"the transaction is signed for chain {decoded.chain_id}, this endpoint serves {chain_id}",
            )
        return decoded, raw

    async def _send_raw(self, principal: Principal, chain_id: int, request: j.Request, mode: Sending) -> Any:
        decoded, raw = self.decode(chain_id, j.one_param(request, "the signed transaction"))
        if not principal.has_any(SENDERS):
            raise j.JsonRpcError(
                j.UNAUTHORIZED, "this API key may not send transactions (owner, admin or trader)"
            )
        accepted = await self.commands.accept(
            Submission(
                principal.tenant_id,
                chain_id,
                decoded,
                raw,
                mode.mode,
                max_block=None,
                head=None,
                source="rpc",
                blocks=self.default_blocks,
                fast=mode.fast,
            )
        )
        row = accepted.row
        if row["status"] == "failed":
            data = (
                "0x" + accepted.simulation.revert.hex()
                if accepted.simulation and accepted.simulation.revert
                else None
            )
            if row["error"].startswith(SANCTIONED):
                raise j.JsonRpcError(
                    j.TRANSACTION_REJECTED,
                    row["error"],
                    {"reasonCode": "RISK_REASON_CODE_SANCTIONED_COUNTERPARTY"},
                )
            code = j.EXECUTION_REVERTED if row["error"].startswith("reverted") else j.TRANSACTION_REJECTED
            raise j.JsonRpcError(code, row["error"], data)
        if accepted.receipt is not None:
            return Extended(row["tx_hash"], {"mevaas": {"orderingReceipt": accepted.receipt.view()}})
        return row["tx_hash"]

    async def _status(self, principal: Principal, chain_id: int, request: j.Request) -> Any:
        digest = _hex_bytes(j.one_param(request, "the transaction hash"), "the transaction hash", 32)
        if len(digest) != 32:
            raise j.JsonRpcError(j.INVALID_PARAMS, "the transaction hash must be 0x + 64 hex")
        tx_hash = "0x" + digest.hex()
        row = await self.commands.find(principal.tenant_id, tx_hash)
        if row is None:
            raise j.JsonRpcError(j.RESOURCE_NOT_FOUND, f"no protected transaction {tx_hash} for this tenant")
        view = status_view(row)
        receipt = await self.commands.receipt(row)
        if receipt is not None:
            view["orderingReceipt"] = receipt.view()
        return view

    async def _transaction_count(self, principal: Principal, chain_id: int, request: j.Request) -> Any:
        counted = int(await self.gateway.chain(chain_id).rpc.request(request.method, request.params), 16)
        if len(request.params) >= 2 and request.params[1] == "pending" and isinstance(request.params[0], str):
            counted = await self.commands.next_nonce(
                principal.tenant_id, chain_id, request.params[0], counted
            )
        return hex(counted)


def _api_key(request: web.Request) -> str:
    key: str = request.match_info.get("api_key") or request.headers.get("X-API-Key") or ""
    if not key:
        authorization = request.headers.get("Authorization", "")
        if authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
    return key


def _label(method: Any) -> str:
    """The metrics label of a method: its name when it is one we know, so a client cannot grow
    the label set with made-up ``eth_get*`` names."""
    if isinstance(method, str) and (method in j.OWN or method in j.READS):
        return method
    if isinstance(method, str) and j.route(method) == "read":
        return "eth_get*"
    return "refused"
