"""TLS inside the cluster: a service's gRPC port serves TLS with a certificate from a private CA
(plaintext clients fail, CA-trusting clients pass) while the plaintext health port answers kubelet's
probes; the bus connects to a `tls://` NATS only through the CA bundle it is given."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mevaas_core.auth import SigningKey, TokenVerifier
from mevaas_core.bus import Bus
from mevaas_core.grpckit.server import GrpcServer
from mevaas_local.embedded import free_port
from tests.fixtures.tls import issue_server_cert, nats_with_config

pytestmark = pytest.mark.integration


def verifier() -> TokenVerifier:
    return TokenVerifier([SigningKey.generate().public_pem()], issuer="mevaas-tenancy", audience="mevaas")


async def check(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


async def test_grpc_serves_tls_and_a_plaintext_health_port(tmp_path: Path) -> None:
    cert = issue_server_cert(tmp_path)
    server = GrpcServer(
        "tls-test",
        verifier(),
        host="127.0.0.1",
        port=0,
        tls_cert_file=str(cert.cert_file),
        tls_key_file=str(cert.key_file),
        health_port=free_port(),
    )
    await server.start()
    try:
        target = f"127.0.0.1:{server.bound_port}"
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.ca_file.read_bytes())
        async with grpc.aio.secure_channel(target, credentials) as channel:
            assert await check(channel) == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(target) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await check(channel)
        # A client that does not trust the private CA is refused.
        async with grpc.aio.secure_channel(target, grpc.ssl_channel_credentials()) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await check(channel)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_health_port}") as channel:
            assert await check(channel) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)


def test_tls_needs_both_files() -> None:
    with pytest.raises(ValueError, match="both"):
        GrpcServer("x", verifier(), host="127.0.0.1", port=0, tls_cert_file="/tmp/cert.pem")


async def test_bus_trusts_a_private_ca_for_tls_nats(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cert = issue_server_cert(tmp_path / "certs")
    tls = f'tls {{ cert_file: "{cert.cert_file}", key_file: "{cert.key_file}" }}'
    async with nats_with_config(tmp_path, tls) as port:
        bus = await Bus.connect(
            f"tls://127.0.0.1:{port}", "tls-test", tls_ca_file=str(cert.ca_file), max_reconnect_attempts=0
        )
        try:
            await bus.ensure_streams()
        finally:
            await bus.close()
        # Without the CA bundle the handshake fails (nats-py keeps retrying; give it a few seconds).
        with pytest.raises(Exception):  # noqa: B017 - nats-py raises either NoServers or a timeout
            await asyncio.wait_for(
                Bus.connect(
                    f"tls://127.0.0.1:{port}", "tls-test", max_reconnect_attempts=0, connect_timeout=2
                ),
                timeout=5,
            )
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
