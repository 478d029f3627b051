"""OpenTelemetry tracing setup and W3C trace-context propagation over NATS headers.

Every service calls ``setup_tracing("<service>")`` once at startup. It installs an SDK
``TracerProvider`` (resource ``service.name``; ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_TRACES_SAMPLER``
are honoured by the SDK) with one exporter chosen by argument or ``OTEL_TRACES_EXPORTER``:

* ``none`` (the default): spans are created and propagated, nothing is exported;
* ``console``: spans printed as JSON to stdout (local debugging);
* ``otlp``: OTLP over gRPC (or HTTP with ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``), only if an
  ``opentelemetry-exporter-otlp-*`` package is installed; otherwise a warning and ``none``. The
  endpoint comes from the standard ``OTEL_EXPORTER_OTLP_*`` variables;
* or a ``SpanExporter`` instance (tests pass an ``InMemorySpanExporter``).

Propagation is W3C trace context (``traceparent`` / ``tracestate``) plus baggage, through the global
propagator, so gRPC interceptors and the NATS bus use the same format:

* the publisher calls ``inject_headers(headers)`` inside its span;
* the consumer calls ``extract_context(headers)`` and starts its span with that context as parent,
  so one trace follows an event across services;
* ``current_trace_id()`` gives the 32-hex trace id for log lines (or None outside a span).

Without ``setup_tracing`` the OpenTelemetry API is a no-op that still propagates an incoming context,
so libraries may create spans unconditionally.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, MutableMapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

__all__ = [
    "current_span_id",
    "current_trace_id",
    "extract_context",
    "get_tracer",
    "inject_headers",
    "setup_tracing",
    "shutdown_tracing",
]

log = logging.getLogger("mevaas.telemetry")

_lock = threading.Lock()
_provider: TracerProvider | None = None
_exporter_ids: set[int] = set()


def setup_tracing(
    service_name: str,
    *,
    exporter: str | SpanExporter | None = None,
    service_version: str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
) -> TracerProvider:
    """Install (once per process) the SDK tracer provider and attach ``exporter``.

    Calling it again returns the same provider; a new exporter instance passed later is added to
    it (the first call's service name stays, as the global provider can be set only once).
    """
    global _provider  # noqa: PLW0603 - one tracer provider per process, by OpenTelemetry's design
    with _lock:
        provider = _provider
        if provider is None:
            existing = trace.get_tracer_provider()
            if isinstance(existing, TracerProvider):
                provider = existing
            else:
                attributes: dict[str, str] = {"service.name": service_name}
                if service_version:
                    attributes["service.version"] = service_version
                attributes.update(resource_attributes or {})
                provider = TracerProvider(resource=Resource.create(attributes))
                trace.set_tracer_provider(provider)
            _provider = provider
        elif isinstance(exporter, str) or exporter is None:
            return provider
        processor = _processor_for(exporter)
        if processor is not None:
            provider.add_span_processor(processor)
        return provider


def _processor_for(exporter: str | SpanExporter | None) -> SpanProcessor | None:
    if isinstance(exporter, SpanExporter):
        if id(exporter) in _exporter_ids:
            return None
        _exporter_ids.add(id(exporter))
        return SimpleSpanProcessor(exporter)
    kind = (exporter or os.environ.get("OTEL_TRACES_EXPORTER") or "none").strip().lower()
    if kind == "none":
        return None
    if kind == "console":
        return SimpleSpanProcessor(ConsoleSpanExporter())
    if kind == "otlp":
        otlp = _otlp_exporter()
        return BatchSpanProcessor(otlp) if otlp is not None else None
    log.warning("unknown trace exporter %r: exporting nothing", kind)
    return None


def _otlp_exporter() -> SpanExporter | None:
    """An OTLP exporter if one is installed; this package deliberately does not depend on one."""
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    module = (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter"
        if protocol.startswith("http")
        else "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
    )
    try:
        import importlib

        exporter_cls = importlib.import_module(module).OTLPSpanExporter
    except ImportError:
        log.warning("OTLP trace export requested but %s is not installed: exporting nothing", module)
        return None
    exporter: SpanExporter = exporter_cls()
    return exporter


def shutdown_tracing() -> None:
    """Flush and stop exporters (call at graceful shutdown)."""
    with _lock:
        if _provider is not None:
            _provider.shutdown()


def get_tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


class _CaseInsensitiveGetter(Getter[Mapping[str, str]]):
    """NATS header names are case-sensitive on the wire; W3C names are lower-case. Accept both."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            lowered = key.lower()
            for name, candidate in carrier.items():
                if name.lower() == lowered:
                    value = candidate
                    break
        return [value] if value is not None else None

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier.keys())


_getter = _CaseInsensitiveGetter()


def inject_headers(
    headers: MutableMapping[str, str], context: Context | None = None
) -> MutableMapping[str, str]:
    """Write ``traceparent`` (and ``tracestate``/``baggage`` when present) for the current span, or
    for ``context``, into ``headers``; returns the same mapping. Nothing is written outside a span."""
    propagate.inject(headers, context=context)
    return headers


def extract_context(headers: Mapping[str, str] | None) -> Context:
    """The context carried by ``headers`` (an empty context when they carry none)."""
    return propagate.extract(headers or {}, getter=_getter)


def current_trace_id() -> str | None:
    """The current trace id as 32 lower-case hex digits, or None outside a valid span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def current_span_id() -> str | None:
    """The current span id as 16 lower-case hex digits, or None outside a valid span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.span_id, "016x") if ctx.is_valid else None
