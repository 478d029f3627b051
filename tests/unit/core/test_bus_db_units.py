"""Pure parts of the bus, database, migration and telemetry modules (no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import wrappers_pb2
from opentelemetry import trace

from mevaas_core.bus import PLATFORM_TENANT, STREAMS, content_type_for, stream_for_subject
from mevaas_core.db import dsn_with, rls_policy_sql
from mevaas_core.migrations import MigrationError, load_migrations
from mevaas_core.telemetry import current_trace_id, extract_context, inject_headers, setup_tracing


def test_every_domain_maps_to_its_stream() -> None:
    assert stream_for_subject("opp.tenant-1.strategy-9") == "OPP"
    assert stream_for_subject("chain.1.block") == "CHAIN"
    assert stream_for_subject("risk.decision.t") == "RISK"
    assert stream_for_subject("exec.result.t") == "EXEC"
    assert stream_for_subject("tenant.t.created") == "TENANT"
    assert stream_for_subject("audit.t.x") == "AUDIT"
    assert stream_for_subject("elsewhere.x") == "none"
    names = {s.name for s in STREAMS}
    assert {"CHAIN", "OPP", "RISK", "EXEC", "TENANT", "AUDIT"} <= names
    assert all(s.duplicate_window.total_seconds() == 120 for s in STREAMS)
    config = next(s for s in STREAMS if s.name == "OPP").config(replicas=3)
    assert config.num_replicas == 3 and config.storage == "file" and config.retention == "limits"
    assert PLATFORM_TENANT.startswith("_")


def test_content_type_names_the_protobuf_message() -> None:
    expected = "application/protobuf; proto=google.protobuf.StringValue"
    assert content_type_for(wrappers_pb2.StringValue) == expected
    assert content_type_for(wrappers_pb2.StringValue(value="x")) == expected


def test_dsn_with_swaps_credentials_and_database() -> None:
    base = "postgresql://postgres:s3cret@127.0.0.1:5432/postgres?sslmode=disable"
    assert dsn_with(base, user="svc_app", password="p@ss:/") == (
        "postgresql://svc_app:p%40ss%3A%2F@127.0.0.1:5432/postgres?sslmode=disable"
    )
    assert (
        dsn_with(base, database="other")
        == "postgresql://postgres:s3cret@127.0.0.1:5432/other?sslmode=disable"
    )
    assert dsn_with(base, user="nopass") == "postgresql://nopass@127.0.0.1:5432/postgres?sslmode=disable"
    with pytest.raises(ValueError):
        dsn_with("mysql://x@y/z", user="a")


def test_rls_policy_snippet_follows_the_convention() -> None:
    sql = rls_policy_sql("svc.things")
    assert "ENABLE ROW LEVEL SECURITY" in sql and "FORCE ROW LEVEL SECURITY" in sql
    assert "tenant_id = current_setting('app.tenant_id', true)" in sql
    assert "app.scope" not in sql  # platform scope is a role, never a setting
    assert "CREATE POLICY platform_access ON svc.things TO svc_platform USING (true)" in sql
    assert "NULLIF(current_setting('app.tenant_id', true), '')::uuid" in rls_policy_sql(
        "s.t", column_type="uuid"
    )


def test_load_migrations_orders_and_validates(tmp_path: Path) -> None:
    (tmp_path / "V010__later.sql").write_text("SELECT 10;")
    (tmp_path / "V2__add_things.sql").write_text("SELECT 2;\r\n")
    (tmp_path / "README.md").write_text("not a migration")
    migrations = load_migrations(tmp_path)
    assert [(m.version, m.description) for m in migrations] == [(2, "add things"), (10, "later")]
    (tmp_path / "V2__dup.sql").write_text("SELECT 2;")
    with pytest.raises(MigrationError, match="appears twice"):
        load_migrations(tmp_path)
    (tmp_path / "V2__dup.sql").unlink()
    (tmp_path / "v3-bad.sql").write_text("SELECT 3;")
    with pytest.raises(MigrationError, match="named V<version>__<description>"):
        load_migrations(tmp_path)
    with pytest.raises(MigrationError, match="no migrations directory"):
        load_migrations(tmp_path / "missing")


def test_checksum_ignores_line_endings(tmp_path: Path) -> None:
    (tmp_path / "V1__a.sql").write_bytes(b"SELECT 1;\r\nSELECT 2;\r\n")
    crlf = load_migrations(tmp_path)[0].checksum
    (tmp_path / "V1__a.sql").write_bytes(b"SELECT 1;\nSELECT 2;\n")
    assert load_migrations(tmp_path)[0].checksum == crlf


def test_trace_context_round_trips_through_headers() -> None:
    setup_tracing("unit-tests")
    assert current_trace_id() is None
    headers: dict[str, str] = {}
    with trace.get_tracer("t").start_as_current_span("producer") as span:
        inject_headers(headers)
        trace_id = current_trace_id()
    assert trace_id == format(span.get_span_context().trace_id, "032x")
    assert headers["traceparent"].split("-")[1] == trace_id
    # Header names are case-insensitive on the way in.
    context = extract_context({"Traceparent": headers["traceparent"]})
    with trace.get_tracer("t").start_as_current_span("consumer", context=context):
        assert current_trace_id() == trace_id
    assert extract_context(None) == extract_context({})
