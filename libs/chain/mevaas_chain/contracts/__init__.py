"""Solidity contracts of the platform (sources in ``src/``) and their committed build artifacts.

``python -m mevaas_chain.contracts.build`` recompiles the sources offline with the pinned npm
``solc`` and rewrites the ``*.json`` artifacts next to this file; the build is reproducible (same
bytes on every rebuild), so the committed artifacts are what the sources compile to.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACT_DIR = Path(__file__).resolve().parent
SOURCE_DIR = ARTIFACT_DIR / "src"
CONTRACT_NAMES = ("Executor", "MockToken", "PriceFeed")


@dataclass(frozen=True)
class Artifact:
    """ABI and creation bytecode of one contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes


@cache
def load_artifact(name: str) -> Artifact:
    """One of this package's compiled contracts (``Executor``, ``MockToken``)."""
    data = json.loads((ARTIFACT_DIR / f"{name}.json").read_text())
    return Artifact(
        name=name,
        abi=data["abi"],
        bytecode=bytes.fromhex(data["bytecode"].removeprefix("0x")),
        deployed_bytecode=bytes.fromhex(data["deployedBytecode"].removeprefix("0x")),
    )


def node_modules_dir() -> Path:
    """The repo's pinned npm tools (``tools/node/node_modules``), or ``MEVAAS_NODE_MODULES``."""
    override = os.environ.get("MEVAAS_NODE_MODULES")
    if override:
        return Path(override)
    for parent in ARTIFACT_DIR.parents:
        candidate = parent / "tools" / "node" / "node_modules"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("tools/node/node_modules not found; run `make setup` or set MEVAAS_NODE_MODULES")


@cache
def load_npm_artifact(package: str, name: str) -> Artifact:
    """A prebuilt artifact shipped in an npm package, e.g. ``("@uniswap/v2-core", "UniswapV2Pair")``."""
    data = json.loads((node_modules_dir() / package / "build" / f"{name}.json").read_text())
    evm = data.get("evm", {})
    bytecode = data.get("bytecode") or evm.get("bytecode", {}).get("object", "")
    deployed = evm.get("deployedBytecode", {}).get("object", "") or data.get("deployedBytecode", "")
    abi = data["abi"]
    if isinstance(abi, str):
        abi = json.loads(abi)
    return Artifact(
        name=name,
        abi=abi,
        bytecode=bytes.fromhex(bytecode.removeprefix("0x")),
        deployed_bytecode=bytes.fromhex(deployed.removeprefix("0x")),
    )
