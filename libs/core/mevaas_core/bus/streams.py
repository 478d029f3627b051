"""The platform's JetStream streams, its message headers and content types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from google.protobuf.message import Message
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

HEADER_MSG_ID: Final = "Nats-Msg-Id"
HEADER_TENANT: Final = "tenant-id"
HEADER_CONTENT_TYPE: Final = "content-type"
HEADER_SERVICE_ERROR: Final = "Nats-Service-Error"
HEADER_SERVICE_ERROR_CODE: Final = "Nats-Service-Error-Code"
CONTENT_TYPE_PREFIX: Final = "application/protobuf; proto="
PLATFORM_TENANT: Final = "_platform"
"""``tenant_id`` of events that belong to no tenant (market data, platform notices)."""

DUPLICATE_WINDOW: Final = timedelta(minutes=2)
DEFAULT_BACKOFF: Final[tuple[float, ...]] = (0.5, 2.0, 10.0, 30.0)

_DAY = timedelta(days=1)
_GIB = 1 << 30


@dataclass(frozen=True)
class StreamSpec:
    """One JetStream stream: what it captures and how long it keeps it."""

    name: str
    subjects: tuple[str, ...]
    max_age: timedelta
    description: str
    max_bytes: int = -1
    duplicate_window: timedelta = DUPLICATE_WINDOW

    def config(self, replicas: int = 1) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            description=self.description,
            subjects=list(self.subjects),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age.total_seconds(),
            max_bytes=self.max_bytes,
            duplicate_window=self.duplicate_window.total_seconds(),
            num_replicas=replicas,
        )


STREAMS: Final[tuple[StreamSpec, ...]] = (
    StreamSpec("CHAIN", ("chain.>",), _DAY, "market data per chain: blocks, pending txs, pool state", _GIB),
    StreamSpec("OPP", ("opp.>",), _DAY, "opportunities found by strategies, per tenant", _GIB),
    StreamSpec("RISK", ("risk.>",), 7 * _DAY, "risk decisions and breaches, per tenant"),
    StreamSpec("EXEC", ("exec.>",), 7 * _DAY, "execution sessions and results, per tenant"),
    StreamSpec("TENANT", ("tenant.>",), 30 * _DAY, "tenant lifecycle events"),
    StreamSpec("AUDIT", ("audit.>",), 90 * _DAY, "audit trail of mutations"),
    StreamSpec("PORTFOLIO", ("portfolio.>",), 7 * _DAY, "portfolio commands (rebalance), per tenant"),
    StreamSpec("REPORT", ("report.>",), 7 * _DAY, "generated reports, per tenant"),
    StreamSpec("PROTECT", ("protect.>",), 30 * _DAY, "MEV protection per tenant: threats, order-flow hints"),
)

_stream_by_prefix: dict[str, str] = {
    spec_subject.split(".", 1)[0]: spec.name for spec in STREAMS for spec_subject in spec.subjects
}


def stream_for_subject(subject: str) -> str:
    """The stream capturing ``subject`` (by its first token), or ``"none"``; used for metric labels."""
    return _stream_by_prefix.get(subject.split(".", 1)[0], "none")


_content_types: dict[type[Message], str] = {}


def content_type_for(message_type: type[Message] | Message) -> str:
    cls = message_type if isinstance(message_type, type) else type(message_type)
    content_type = _content_types.get(cls)
    if content_type is None:
        content_type = _content_types[cls] = CONTENT_TYPE_PREFIX + cls.DESCRIPTOR.full_name
    return content_type
