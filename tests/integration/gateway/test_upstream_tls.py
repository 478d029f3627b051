"""The gateway's upstream channels against a service serving gRPC over TLS (as the chart runs
them with tls.enabled): with the platform CA (GRPC_TLS_CA_FILE) a call goes through; without it
(a plaintext channel) or with another CA it is refused at the handshake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from mevaas_core.auth import SigningKey, TokenVerifier
from mevaas_core.grpckit.server import GrpcServer
from mevaas_gateway.upstream import Upstreams
from tests.fixtures.tls import ServerCert, issue_server_cert

pytestmark = pytest.mark.integration

HEALTH_CHECK = "/grpc.health.v1.Health/Check"


@pytest.fixture
async def tls_service(tmp_path: Path) -> AsyncIterator[tuple[str, ServerCert]]:
    """A platform gRPC server on TLS (health only) and its certificate's files."""
    cert = issue_server_cert(tmp_path / "service")
    verifier = TokenVerifier([SigningKey.generate().public_pem()], issuer="mevaas-tenancy", audience="mevaas")
    server = GrpcServer(
        "tenancy",
        verifier,
        host="127.0.0.1",
        port=0,
        tls_cert_file=str(cert.cert_file),
        tls_key_file=str(cert.key_file),
    )
    await server.start()
    try:
        yield f"localhost:{server.bound_port}", cert
    finally:
        await server.stop(0)


async def health(upstreams: Upstreams) -> int:
    raw = await upstreams.call(
        "tenancy", HEALTH_CHECK, health_pb2.HealthCheckRequest().SerializeToString(), ()
    )
    return int(health_pb2.HealthCheckResponse.FromString(raw).status)


async def test_upstreams_reach_a_tls_service_with_the_platform_ca(
    tls_service: tuple[str, ServerCert],
) -> None:
    address, cert = tls_service
    upstreams = Upstreams({"tenancy": address}, ca_file=str(cert.ca_file))
    try:
        assert await health(upstreams) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await upstreams.close()


async def test_upstreams_without_the_ca_are_refused(
    tls_service: tuple[str, ServerCert], tmp_path: Path
) -> None:
    address, _ = tls_service
    plaintext = Upstreams({"tenancy": address})
    foreign = Upstreams({"tenancy": address}, ca_file=str(issue_server_cert(tmp_path / "other").ca_file))
    try:
        for upstreams in (plaintext, foreign):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health(upstreams)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await plaintext.close()
        await foreign.close()
