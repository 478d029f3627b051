"""An anvil process from the repo's pinned npm package, on 127.0.0.1 and a free port."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from mevaas_chain.client import ChainClient, TransientRpcError
from mevaas_chain.contracts import node_modules_dir

DEFAULT_GAS_LIMIT = 10_000_000_000
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the kernel sends anvil SIGTERM if this process dies without cleaning up."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def anvil_binary() -> Path:
    override = os.environ.get("MEVAAS_ANVIL")
    if override:
        return Path(override)
    modules = node_modules_dir()
    # The platform package's binary directly: the npm wrapper would add a node process in between.
    machine = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine(), platform.machine()
    )
    for candidate in (
        modules / "@foundry-rs" / f"anvil-{sys.platform}-{machine}" / "bin" / "anvil",
        modules / ".bin" / "anvil",
    ):
        if candidate.exists():
            return candidate
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise FileNotFoundError("anvil not found; run `make setup` (npm @foundry-rs/anvil) or set MEVAAS_ANVIL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Anvil:
    """anvil with on-demand mining (``--no-mining``) and FIFO ordering: blocks are produced by
    ``evm_mine`` from the devnet's block producer, so it decides what goes first in each block."""

    def __init__(
        self, *, chain_id: int = 31337, gas_limit: int = DEFAULT_GAS_LIMIT, accounts: int = 10
    ) -> None:
        self.chain_id = chain_id
        self.gas_limit = gas_limit
        self.accounts = accounts
        self.port = 0
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self, timeout_s: float = 20.0) -> None:
        binary = anvil_binary()
        for _ in range(5):
            self.port = free_port()
            self._proc = await asyncio.create_subprocess_exec(
                str(binary),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--chain-id",
                str(self.chain_id),
                "--gas-limit",
                str(self.gas_limit),
                "--accounts",
                str(self.accounts),
                "--no-mining",
                "--order",
                "fifo",
                "--silent",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # Own process group, so stop() can reach anything it spawns.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            if await self._wait_ready(timeout_s):
                return
            await self.stop()
        raise RuntimeError("anvil did not start")

    async def _wait_ready(self, timeout_s: float) -> bool:
        client = ChainClient(self.http_url, timeout_s=2.0, retries=0)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            while loop.time() < deadline:
                if self._proc is None or self._proc.returncode is not None:
                    return False
                with contextlib.suppress(TransientRpcError):
                    await client.chain_id()
                    return True
                await asyncio.sleep(0.05)
            return False
        finally:
            await client.close()

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
