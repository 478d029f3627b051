"""Routes of the HTTP/JSON API, derived from the proto descriptors so they never drift.

Every unary RPC of every v1 service is `POST /v1/<package>.<Service>/<Method>` with the request
message as proto3 JSON in the body, and the response message as proto3 JSON (the mapping of
Connect and Twirp: one rule, no per-RPC annotations to keep in step with the protos). A read RPC
may also be called with `GET` and its top-level scalar fields as query parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import FileDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

# Read RPCs: no state changes, so GET is allowed and replies may be cached (see cache.py).
READ_PREFIXES = ("Get", "List", "WhoAmI")
# Reads that must never come from a cache: they are how a caller proves its credentials, or they
# report a live state that changes without an event (tokens, keys).
UNCACHEABLE = frozenset({"ExchangeApiKey", "GetPublicKeys", "WhoAmI"})


@dataclass(frozen=True, slots=True)
class Route:
    service: str  # full proto name, e.g. mevaas.strategy.v1.StrategyService
    method: str  # e.g. ListStrategies
    upstream: str  # the fleet service that serves it, e.g. strategy
    request_type: type[Message]
    response_type: type[Message]
    descriptor: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/v1/{self.service}/{self.method}"

    @property
    def grpc_path(self) -> str:
        return f"/{self.service}/{self.method}"

    @property
    def read_only(self) -> bool:
        return self.method.startswith(READ_PREFIXES)

    @property
    def cacheable(self) -> bool:
        return self.read_only and self.method not in UNCACHEABLE

    @property
    def group(self) -> str:
        """The RPC group (the service's short name), e.g. StrategyService."""
        return self.service.rsplit(".", 1)[1]


def upstream_of(file: FileDescriptor, overrides: Mapping[str, str]) -> str:
    """The fleet service serving a proto package: `mevaas.<domain>.v1` -> `<domain>`, unless the
    package is served elsewhere (PortfolioService lives in analytics)."""
    package = file.package
    return overrides.get(package, package.split(".")[1])


def routes_from(modules: Iterable[ModuleType], overrides: Mapping[str, str]) -> dict[str, Route]:
    """All unary RPCs of the given `_pb2` modules, by HTTP path."""
    routes: dict[str, Route] = {}
    for module in modules:
        file: FileDescriptor = module.DESCRIPTOR
        for service in file.services_by_name.values():
            routes.update((r.path, r) for r in _service_routes(service, upstream_of(file, overrides)))
    return routes


def _service_routes(service: ServiceDescriptor, upstream: str) -> Iterable[Route]:
    for method in service.methods:
        if method.client_streaming or method.server_streaming:
            continue
        yield Route(
            service=service.full_name,
            method=method.name,
            upstream=upstream,
            request_type=message_factory.GetMessageClass(method.input_type),
            response_type=message_factory.GetMessageClass(method.output_type),
            descriptor=method,
        )


def query_to_json(route: Route, query: Mapping[str, str]) -> dict[str, Any]:
    """GET query parameters as a JSON request: each names a top-level field (JSON or proto name);
    repeated fields take comma-separated values. Unknown names are left for the JSON parser to
    reject with the field's name."""
    fields = route.request_type.DESCRIPTOR.fields_by_name
    by_json = {f.json_name: f for f in fields.values()}
    body: dict[str, Any] = {}
    for name, value in query.items():
        field = fields.get(name) or by_json.get(name)
        if field is not None and _is_repeated(field):
            body[name] = [v for v in value.split(",") if v]
        else:
            body[name] = value
    return body


def _is_repeated(field: Any) -> bool:
    return bool(field.is_repeated)
