"""The installed `mevaas` command run as a subprocess (its real entry point, its own imports and
config discovery), with no config of the machine it runs on: cwd and XDG_CONFIG_HOME are a temp dir."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MEVAAS = str(Path(sys.executable).parent / "mevaas")


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """stderr with the console's line wrapping undone; never a traceback."""
        assert "Traceback" not in self.stderr and "Traceback" not in self.stdout, self.stderr
        return " ".join(self.stderr.split())


@dataclass
class MevaasProcess:
    home: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("MEVAAS_")}
        return {**keep, "XDG_CONFIG_HOME": str(self.home / "config"), **self.env, **(extra or {})}

    async def __call__(self, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> Ran:
        process = await asyncio.create_subprocess_exec(
            MEVAAS,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.cwd or self.home,
            env=self.environment(env),
        )
        out, err = await process.communicate(stdin.encode())
        assert process.returncode is not None
        return Ran(process.returncode, out.decode(), err.decode())

    async def ok(self, *args: str, stdin: str = "") -> Ran:
        ran = await self(*args, stdin=stdin)
        assert ran.code == 0, (args, ran.stdout, ran.stderr)
        return ran

    async def json(self, *args: str, stdin: str = "") -> Any:
        return json.loads((await self.ok(*args, "--json", stdin=stdin)).stdout)


def for_services(home: Path, api_key: str, **runtimes: Any) -> MevaasProcess:
    """`mevaas` with `api_key` and each running service's endpoint (by service name) in its env."""
    env = {"MEVAAS_API_KEY": api_key}
    for name, runtime in runtimes.items():
        env[f"MEVAAS_{name.upper()}_ENDPOINT"] = f"127.0.0.1:{runtime.grpc_port}"
    return MevaasProcess(home, env)
