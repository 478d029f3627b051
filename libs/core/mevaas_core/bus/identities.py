"""Who may do what on the bus: one NATS identity per service, per dedicated tenant and per tool,
each with least-privilege publish/subscribe permissions that the NATS server enforces.

One table (`SERVICE_NEEDS`) says what each service does on the bus; the permissions are derived
from it, and the same derivation feeds every NATS server the platform runs on: the embedded one
of `mevaas up` and of the tests (`mevaas_local.embedded.EmbeddedNats(users=...)`) and, in
Kubernetes, the authorization the platform chart ships (`charts/mevaas/files/nats-users.json`,
written by `python -m mevaas_core.bus.identities`, kept equal to this module by a test).

What the permissions encode (ARCHITECTURE.md section 4):

* a service publishes only the event subjects it produces (`tenant.>` and `auth.>` only tenancy)
  plus the audit records every service writes; it requests only the request/reply subjects it
  calls and subscribes only to the ones it serves (answering through ``allow_responses``);
* replies come on the identity's own inbox prefix (``_INBOX_<user>``), so no identity reads
  another's replies;
* JetStream is reachable only for the streams the service consumes (creating, pulling from and
  acking its consumers there), besides creating the platform streams it may be first to need;
* a dedicated tenant's identity (`tenant_identity`) sees only ``<domain>.<tenant>.>`` and market
  data, and JetStream only through its own durables (the same lists charts/tenant renders).

Credentials travel as files: a service reads its NATS URL, user and password included, from
``SECRETS_DIR/nats_url`` (see mevaas_core.config), never from the environment.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from mevaas_core.bus.streams import STREAMS

__all__ = [
    "AUDIT_SUBJECT",
    "PLATFORM_STREAMS",
    "SERVICE_NEEDS",
    "TENANT_DOMAINS",
    "BusIdentity",
    "BusNeeds",
    "NatsUser",
    "Permissions",
    "authorization_config",
    "inbox_prefix",
    "redacted",
    "service_identity",
    "tenant_identity",
    "tool_identity",
    "url_with_credentials",
    "users_document",
]

AUDIT_SUBJECT = "audit.*.record"
RATE_LIMIT_KV = "RATE_LIMITS"
# Every stream the services create (ensure_streams, the revocation feed's AUTH, the rate-limit KV).
PLATFORM_STREAMS: tuple[str, ...] = (*(s.name for s in STREAMS), "AUTH", f"KV_{RATE_LIMIT_KV}")
# The domains of a tenant's own subjects (`<domain>.<tenant>.>`), as charts/tenant lists them.
TENANT_DOMAINS: tuple[str, ...] = ("opp", "risk", "exec", "audit", "portfolio", "report", "tenant")
_TENANT_STREAMS = {"opp": "OPP", "risk": "RISK", "exec": "EXEC", "audit": "AUDIT"} | {
    "portfolio": "PORTFOLIO",
    "report": "REPORT",
    "tenant": "TENANT",
}
# The tenant's workers (their durables are `<component>-<tenant>`).
TENANT_WORKERS: tuple[str, ...] = ("strategy", "execution")
_USER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class BusNeeds:
    """What one process does on the bus (the mechanisms of ServiceRuntime are added for services)."""

    publishes: tuple[str, ...] = ()  # event subjects it publishes (JetStream)
    consumes: tuple[str, ...] = ()  # streams it has consumers on
    serves: tuple[str, ...] = ()  # request/reply subjects it answers
    requests: tuple[str, ...] = ()  # request/reply subjects it calls
    observes: tuple[str, ...] = ()  # core subscriptions of an observer (no JetStream)


# What ServiceRuntime itself does in every service: audit records (the interceptor), the
# revocation feed (ordered consumer on AUTH), erasure (`<service>-erasure` on TENANT) and the
# shared rate limiter (KV RATE_LIMITS).
RUNTIME_NEEDS = BusNeeds(publishes=(AUDIT_SUBJECT,), consumes=("AUTH", "TENANT"))

# Subjects served over request/reply (mevaas_core.subjects).
_STRATEGY_RPC = "strategy.rpc.>"
_ANALYTICS_RPC = "analytics.rpc.>"
_RISK_RPC = "rpc.risk.>"
_EXECUTION_RPC = "rpc.execution.>"
_TENANCY_RPC = "rpc.tenancy.>"
# Tenant data keys (sealed), for the operator alone: outside rpc.execution.>, which others request.
_KEYS_RPC = "rpc.keys.tenant_data_key"

SERVICE_NEEDS: Mapping[str, BusNeeds] = {
    "tenancy": BusNeeds(
        publishes=("tenant.>", "auth.*.revoked"),
        consumes=("AUDIT",),
        # Tenants' onboarding phases, which execution gates live sessions and rebalances by.
        serves=(_TENANCY_RPC,),
    ),
    "strategy": BusNeeds(
        # Pending swaps seen in the public pool, and the sandwich threats they carry for their
        # senders' tenants.
        # PROTECT: the order-flow hints its backrun strategies bid on.
        # protect.<tenant>.leverage: leverage protection's alerts, which WatchProtectionAlerts
        # streams back (observes); protect.<tenant>.position: protected positions' collateral
        # (analytics bills on it); the treasury's holdings answer which wallets are a tenant's.
        publishes=(
            "opp.>",
            "chain.*.block",
            "chain.*.pending",
            "protect.*.threat",
            "protect.*.leverage",
            "protect.*.position",
        ),
        consumes=("EXEC", "PROTECT"),
        serves=(_STRATEGY_RPC,),
        requests=(_ANALYTICS_RPC, _EXECUTION_RPC),
        observes=("protect.*.leverage",),
    ),
    "risk": BusNeeds(
        publishes=("risk.>",),
        consumes=("OPP", "EXEC"),
        serves=(_RISK_RPC,),
        # Strategy ids in limits and kill switches are checked against the tenant's strategies.
        requests=(_STRATEGY_RPC,),
    ),
    "execution": BusNeeds(
        # A rebalance's trades go to risk's check as opportunities on opp.<tenant>.rebalance;
        # order-flow hints of protected transactions go to the searchers in strategy.
        publishes=("exec.>", "opp.*.rebalance", "protect.*.hint"),
        # Rebalance commands arrive on exec.<tenant>.rebalance.
        consumes=("RISK", "EXEC"),
        serves=(_EXECUTION_RPC, _KEYS_RPC),
        requests=(_STRATEGY_RPC, _RISK_RPC, _TENANCY_RPC),
    ),
    "analytics": BusNeeds(
        # Rebalance commands go to execution on exec.<tenant>.rebalance (through its outbox).
        publishes=("exec.*.rebalance",),
        # PROTECT: protected positions' snapshots (the leverage-protection fee).
        consumes=("OPP", "RISK", "EXEC", "AUDIT", "CHAIN", "PROTECT"),
        serves=(_ANALYTICS_RPC,),
        # GetPositions reads the holdings from execution's treasury.
        requests=(_STRATEGY_RPC, _EXECUTION_RPC),
    ),
    "gateway": BusNeeds(observes=tuple(f"{d}.>" for d in TENANT_DOMAINS)),
}

# Processes that are not ServiceRuntime services.
TOOL_NEEDS: Mapping[str, BusNeeds] = {
    # The operator follows TENANT (durable mevaas-operator) and creates the stream if it is first;
    # it asks execution for dedicated tenants' data keys (sealed to it) to write their Secrets.
    "operator": BusNeeds(consumes=("TENANT",), requests=(_KEYS_RPC,)),
    # `mevaas up`'s live view: an observer of the hot path.
    "console": BusNeeds(observes=("opp.>", "risk.*.decision", "exec.*.result", "chain.*.block")),
}


@dataclass(frozen=True, slots=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False

    def as_nats(self) -> dict[str, Any]:
        """The ``permissions`` block of a NATS user (JSON is valid NATS config)."""
        return {
            "publish": {"allow": list(self.publish)},
            "subscribe": {"allow": list(self.subscribe)},
            "allow_responses": self.allow_responses,
        }


@dataclass(frozen=True, slots=True)
class BusIdentity:
    """A NATS user; ``permissions`` None means unrestricted (only the tests' harness and admins)."""

    user: str
    permissions: Permissions | None
    inbox_prefix: str = ""

    def __post_init__(self) -> None:
        if not _USER.match(self.user):
            raise ValueError(f"NATS user {self.user!r} must be 1-64 letters, digits, '-' or '_'")


def inbox_prefix(user: str) -> str:
    """The identity's own reply subjects (nats-py's ``inbox_prefix``): ``_INBOX_<user>``, and for a
    tenant's user ``tenant-<id>`` ``_INBOX_<id>`` (the prefix charts/tenant grants)."""
    return f"_INBOX_{user.removeprefix('tenant-')}"


def _jetstream_consumer(stream: str) -> tuple[list[str], list[str]]:
    """Publish and subscribe subjects to create, pull from and ack consumers on ``stream``."""
    publish = [
        f"$JS.API.CONSUMER.CREATE.{stream}",  # ephemeral (ordered) consumers
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.*",
        f"$JS.API.CONSUMER.INFO.{stream}.*",
        f"$JS.API.CONSUMER.DELETE.{stream}.*",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
        f"$JS.API.STREAM.MSG.GET.{stream}",  # the dropped message an advisory names
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",  # flow control of push (ordered) consumers
    ]
    subscribe = [f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.*"]
    return publish, subscribe


def _permissions(user: str, needs: Iterable[BusNeeds], *, key_value: bool) -> Permissions:
    items = list(needs)
    publish: list[str] = []
    subscribe: list[str] = [f"{inbox_prefix(user)}.>"]
    for item in items:
        publish += [*item.publishes, *item.requests]
        subscribe += [*item.serves, *item.observes]
    streams = sorted({s for item in items for s in item.consumes})
    if streams or any(item.publishes for item in items):
        publish += ["$JS.API.INFO", "$JS.API.STREAM.INFO.*"]
        publish += [f"$JS.API.STREAM.{op}.{s}" for s in PLATFORM_STREAMS for op in ("CREATE", "UPDATE")]
    for stream in streams:
        more_publish, more_subscribe = _jetstream_consumer(stream)
        publish += more_publish
        subscribe += more_subscribe
    if key_value:
        kv = f"KV_{RATE_LIMIT_KV}"
        publish += [f"$KV.{RATE_LIMIT_KV}.>", f"$JS.API.DIRECT.GET.{kv}", f"$JS.API.DIRECT.GET.{kv}.>"]
        publish += [f"$JS.API.STREAM.MSG.GET.{kv}"]
    return Permissions(
        publish=tuple(dict.fromkeys(publish)),
        subscribe=tuple(dict.fromkeys(subscribe)),
        allow_responses=any(item.serves for item in items),
    )


def service_identity(service: str) -> BusIdentity:
    """The identity of a ServiceRuntime service (its own needs plus the runtime's)."""
    needs = SERVICE_NEEDS.get(service)
    if needs is None:
        raise KeyError(f"no bus identity for service {service!r}: add it to SERVICE_NEEDS")
    return BusIdentity(
        service, _permissions(service, (RUNTIME_NEEDS, needs), key_value=True), inbox_prefix(service)
    )


def tool_identity(name: str) -> BusIdentity:
    return BusIdentity(name, _permissions(name, (TOOL_NEEDS[name],), key_value=False), inbox_prefix(name))


def tenant_identity(tenant_id: str) -> BusIdentity:
    """A dedicated tenant's workers: ``<domain>.<tenant>.>`` and ``chain.>``, JetStream only through
    the durables ``<worker>-<tenant>`` filtered on the tenant's subjects (as charts/tenant renders)."""
    user = f"tenant-{tenant_id}"
    inbox = inbox_prefix(user)
    own = [f"{d}.{tenant_id}.>" for d in TENANT_DOMAINS]
    subscribe = ["chain.>", f"{inbox}.>", *own]
    # It reads its tenant's lifecycle but never speaks for tenancy (tenant.> is a platform event).
    publish = [subject for subject in own if not subject.startswith("tenant.")]
    publish += ["$JS.API.INFO", "$JS.API.STREAM.INFO.*"]
    for domain in TENANT_DOMAINS:
        stream = _TENANT_STREAMS[domain]
        for worker in TENANT_WORKERS:
            durable = f"{worker}-{tenant_id}"
            publish += [
                f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.{domain}.{tenant_id}.>",
                f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
                f"$JS.ACK.{stream}.{durable}.>",
            ]
    return BusIdentity(user, Permissions(tuple(publish), tuple(subscribe), allow_responses=False), inbox)


@dataclass(frozen=True, slots=True)
class NatsUser:
    identity: BusIdentity
    password: str = field(repr=False)


def authorization_config(users: Sequence[NatsUser]) -> str:
    """The ``authorization`` block of a nats-server config for ``users`` (no anonymous access)."""
    entries = []
    for user in users:
        entry: dict[str, Any] = {"user": user.identity.user, "password": user.password}
        if user.identity.permissions is not None:
            entry["permissions"] = user.identity.permissions.as_nats()
        entries.append("    " + json.dumps(entry))
    return "authorization {\n  users = [\n" + ",\n".join(entries) + "\n  ]\n}\n"


def url_with_credentials(url: str, user: str, password: str) -> str:
    """``url`` (one or several servers, comma-separated) carrying ``user:password``."""
    parts = []
    for one in (u.strip() for u in url.split(",") if u.strip()):
        split = urlsplit(one)
        host = split.hostname or "127.0.0.1"
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
        if split.port:
            netloc += f":{split.port}"
        parts.append(urlunsplit((split.scheme, netloc, split.path, split.query, split.fragment)))
    return ",".join(parts)


def redacted(url: str) -> str:
    """``url`` without its credentials (for logs)."""
    parts = []
    for one in (u.strip() for u in url.split(",") if u.strip()):
        split = urlsplit(one)
        host = split.hostname or ""
        netloc = f"{host}:{split.port}" if split.port else host
        parts.append(urlunsplit((split.scheme, netloc, split.path, "", "")))
    return ",".join(parts)


def users_document() -> dict[str, Any]:
    """Every platform identity with its permissions, without passwords (what the chart ships)."""
    identities = [service_identity(s) for s in SERVICE_NEEDS] + [tool_identity(t) for t in TOOL_NEEDS]
    return {
        i.user: {"inboxPrefix": i.inbox_prefix, "permissions": i.permissions.as_nats()}
        for i in identities
        if i.permissions is not None
    }


if __name__ == "__main__":  # writes charts/mevaas/files/nats-users.json
    json.dump(users_document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
