"""Child processes that die with us: the death signal, process-group stops, stale pid files and
the lifecycle the embedded servers share."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

log = logging.getLogger("mevaas.embedded")

_PR_SET_PDEATHSIG = 1
_LOCALHOST = "127.0.0.1"


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started (the message includes the tail of its log)."""


def free_port(host: str = _LOCALHOST) -> int:
    """A TCP port that was free a moment ago (callers retry if another process takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


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
