"""The one way an in-cluster gRPC client opens a channel: TLS verified against the platform CA
when a CA file is configured (GRPC_TLS_CA_FILE, the servers' `tls.enabled` in the chart), plaintext
otherwise (the local fleet and tests on loopback)."""

from __future__ import annotations

from pathlib import Path

import grpc


def client_channel(address: str, *, ca_file: str = "") -> grpc.aio.Channel:
    """A channel to ``address`` (host:port); with ``ca_file`` (PEM) the server's certificate must
    chain to it and name the host, so a plaintext or foreign server is refused at the handshake."""
    if not ca_file:
        return grpc.aio.insecure_channel(address)
    # Read once at open: a rotated CA reaches the client with its next channel (a pod restart).
    credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca_file).read_bytes())
    return grpc.aio.secure_channel(address, credentials)
