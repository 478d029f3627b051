"""gRPC failures as people read them, and the exit code each one ends the CLI with.

The exit codes (docs/cli.md) group the status codes by what the caller should do next: fix the
request (1), fix the command line (2), get another role or key (3), retry later (4), report a
server fault (5), configure the CLI (6), or nothing because they declined (7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_DENIED = 3
EXIT_UNAVAILABLE = 4
EXIT_SERVER_FAULT = 5
EXIT_CONFIG = 6
EXIT_DECLINED = 7

# Every status code the servers answer, by what the caller should do next.
# (By name, so the CLI can name exit codes without importing grpc.)
EXIT_CODES: dict[str, int] = {
    "INVALID_ARGUMENT": EXIT_REFUSED,
    "FAILED_PRECONDITION": EXIT_REFUSED,
    "NOT_FOUND": EXIT_REFUSED,
    "ALREADY_EXISTS": EXIT_REFUSED,
    "OUT_OF_RANGE": EXIT_REFUSED,
    "ABORTED": EXIT_REFUSED,
    "CANCELLED": EXIT_REFUSED,
    "UNAUTHENTICATED": EXIT_DENIED,
    "PERMISSION_DENIED": EXIT_DENIED,
    "UNAVAILABLE": EXIT_UNAVAILABLE,
    "DEADLINE_EXCEEDED": EXIT_UNAVAILABLE,
    "RESOURCE_EXHAUSTED": EXIT_UNAVAILABLE,
    "INTERNAL": EXIT_SERVER_FAULT,
    "UNKNOWN": EXIT_SERVER_FAULT,
    "DATA_LOSS": EXIT_SERVER_FAULT,
    "UNIMPLEMENTED": EXIT_SERVER_FAULT,
}


@dataclass(frozen=True)
class RpcFailure:
    code: str
    message: str
    field_violations: tuple[tuple[str, str], ...] = ()
    retry_after: str = ""

    def lines(self) -> list[str]:
        """First line: code and what is wrong; then one line per further field violation."""
        if not self.field_violations:
            return [f"{self.code}: {self.message}"]
        (field, why), *rest = self.field_violations
        return [f"{self.code}: invalid {field} ({why})", *(f"  invalid {f} ({w})" for f, w in rest)]

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field_violations:
            data["field_violations"] = [{"field": f, "description": w} for f, w in self.field_violations]
        if self.retry_after:
            data["retry_after"] = self.retry_after
        return data


def exit_code(error: grpc.aio.AioRpcError) -> int:
    return EXIT_CODES.get(error.code().name, EXIT_SERVER_FAULT)


def failure(error: grpc.aio.AioRpcError) -> RpcFailure:
    """The status, its message and the rich details (field violations, retry delay) it carries."""
    from google.rpc import error_details_pb2, status_pb2

    violations: list[tuple[str, str]] = []
    retry_after = ""
    metadata: Any = error.trailing_metadata() or ()
    for key, value in metadata:
        if key != "grpc-status-details-bin":
            continue
        for detail in status_pb2.Status.FromString(value).details:
            bad = error_details_pb2.BadRequest()
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(bad):
                violations.extend((v.field, v.description) for v in bad.field_violations)
            elif detail.Unpack(retry):
                retry_after = f"{retry.retry_delay.ToTimedelta().total_seconds():g}s"
    return RpcFailure(error.code().name, error.details() or "", tuple(violations), retry_after)


def describe_error(error: grpc.aio.AioRpcError) -> str:
    """One readable line from a gRPC error, naming every field violation."""
    found = failure(error)
    if not found.field_violations:
        return f"{found.code}: {found.message}"
    fields = ", ".join(f"{f} ({w})" for f, w in found.field_violations)
    return f"{found.code}: invalid {fields}"
