"""The error model over HTTP: the gRPC status code maps to an HTTP status (the same table as
grpc-gateway), the body is the google.rpc.Status as proto3 JSON, field violations included, and
RESOURCE_EXHAUSTED carries `Retry-After` from the status's RetryInfo."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.rpc import code_pb2, error_details_pb2, status_pb2

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class HttpError:
    http_status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def from_status(status: status_pb2.Status) -> HttpError:
    code = grpc.StatusCode.UNKNOWN
    for candidate in grpc.StatusCode:
        if candidate.value[0] == status.code:
            code = candidate
    headers: dict[str, str] = {}
    for detail in status.details:
        retry = error_details_pb2.RetryInfo()
        if detail.Is(retry.DESCRIPTOR) and detail.Unpack(retry):
            seconds = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
            headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "Retry-After" not in headers:
        headers["Retry-After"] = "1"
    body = MessageToDict(status, preserving_proto_field_name=False)
    body.setdefault("code", status.code)
    body["status"] = code.name
    return HttpError(HTTP_STATUS.get(code, 500), body, headers)


def from_rpc_error(error: grpc.aio.AioRpcError) -> HttpError:
    """The upstream's own status (with its rich details when it sent them)."""
    metadata: Any = error.trailing_metadata() or ()
    for key, value in metadata:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return from_status(status_pb2.Status.FromString(value))
    return from_status(status_pb2.Status(code=error.code().value[0], message=error.details() or ""))


def error(code: grpc.StatusCode, message: str, *violations: tuple[str, str]) -> HttpError:
    """An error the gateway itself answers (bad JSON, unknown route), in the same model."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if violations:
        bad = error_details_pb2.BadRequest()
        for field_name, description in violations:
            bad.field_violations.add(field=field_name, description=description)
        status.details.add().Pack(bad)
    return from_status(status)


def rate_limited(message: str, retry_after_seconds: float) -> HttpError:
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message)
    info = error_details_pb2.RetryInfo()
    info.retry_delay.seconds = int(retry_after_seconds)
    info.retry_delay.nanos = int((retry_after_seconds - int(retry_after_seconds)) * 1e9)
    status.details.add().Pack(info)
    return from_status(status)
