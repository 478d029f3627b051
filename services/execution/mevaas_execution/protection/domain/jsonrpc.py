"""The Protect RPC's JSON-RPC 2.0 envelope: parsing requests (single or batch), the error codes
wallets understand (EIP-1474 and geth's), and which methods go where.

Routing is a table, not a chain of ifs: a method is either served by the Protect RPC itself
(``OWN``), passed through to the chain as a read (``READS``, plus every ``eth_get*``), or refused:
the chain's node behind this endpoint must never see a state-changing or node-control call
(``eth_sendTransaction``, ``anvil_*``, ``evm_*``, ``debug_*``) from a client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# EIP-1474: invalid input, resource not found, resource unavailable, transaction rejected, limit
# exceeded (a rate limit, a batch or body too large).
INVALID_INPUT = -32000
RESOURCE_NOT_FOUND = -32001
RESOURCE_UNAVAILABLE = -32002
TRANSACTION_REJECTED = -32003
LIMIT_EXCEEDED = -32005
UNAUTHORIZED = -32004
# geth's "execution reverted", with the revert data in ``data``.
EXECUTION_REVERTED = 3

MAX_BATCH = 100
# An id is echoed in the answer: a longer one is refused rather than sent back.
MAX_ID_CHARS = 256

OWN = frozenset(
    {
        "eth_sendRawTransaction",
        "eth_chainId",
        "eth_accounts",
        "mevaas_getTransactionStatus",
        "eth_getTransactionCount",
    }
)
READS = frozenset(
    {
        "eth_blockNumber",
        "eth_call",
        "eth_estimateGas",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "eth_syncing",
        "net_version",
        "net_listening",
        "web3_clientVersion",
    }
)


@dataclass(frozen=True, slots=True)
class Request:
    id: Any
    method: str
    params: list[Any]


class JsonRpcError(Exception):
    """An error answered as a JSON-RPC error object; ``http_status`` is the HTTP status of the
    response when it is the whole request's (an unknown chain is 404), 200 for a call's own."""

    def __init__(self, code: int, message: str, data: Any = None, *, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.http_status = http_status


def valid_id(rid: Any) -> bool:
    """A string, an integer or null (JSON's true and false are not numbers, nor are huge strings)."""
    if rid is None or (isinstance(rid, int) and not isinstance(rid, bool)):
        return True
    return isinstance(rid, str) and len(rid) <= MAX_ID_CHARS


def echo_id(item: Any) -> Any:
    """The id to answer ``item`` with: its own when it has a valid one, else null (JSON-RPC 2.0:
    an id that could not be detected is answered as null)."""
    rid = item.get("id") if isinstance(item, dict) else None
    return rid if valid_id(rid) else None


def route(method: str) -> str:
    """``own``, ``read`` or ``refused``."""
    if method in OWN:
        return "own"
    if method in READS or method.startswith("eth_get"):
        return "read"
    return "refused"


def parse(item: Any) -> Request:
    """One request object; raises JsonRpcError (INVALID_REQUEST) naming what is wrong."""
    if not isinstance(item, dict):
        raise JsonRpcError(INVALID_REQUEST, "a request must be a JSON object")
    rid = item.get("id")
    if item.get("jsonrpc") != "2.0":
        raise JsonRpcError(INVALID_REQUEST, 'jsonrpc must be "2.0"')
    method = item.get("method")
    if not isinstance(method, str) or not method:
        raise JsonRpcError(INVALID_REQUEST, "method must be a non-empty string")
    params = item.get("params", [])
    if not isinstance(params, list):
        raise JsonRpcError(INVALID_PARAMS, "params must be an array")
    if not valid_id(rid):
        raise JsonRpcError(
            INVALID_REQUEST, f"id must be an integer, a string of at most {MAX_ID_CHARS} characters or null"
        )
    return Request(rid, method, params)


def batch(body: Any) -> tuple[list[Any], bool]:
    """The request items of a body and whether it was a batch."""
    if isinstance(body, list):
        if not body:
            raise JsonRpcError(INVALID_REQUEST, "an empty batch")
        if len(body) > MAX_BATCH:
            raise JsonRpcError(LIMIT_EXCEEDED, f"a batch holds at most {MAX_BATCH} requests")
        return body, True
    return [body], False


def result(rid: Any, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "result": value}


def error(rid: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": rid, "error": body}


def one_param(request: Request, name: str) -> Any:
    if len(request.params) < 1:
        raise JsonRpcError(INVALID_PARAMS, f"{request.method} takes {name} as its first parameter")
    return request.params[0]
