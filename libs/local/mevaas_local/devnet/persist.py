"""A devnet chain's state kept across restarts: anvil's own state dump (accounts, code, storage,
the head block) plus what the devnet deployed there (tokens, pools, executor, Aave market), in one
file per chain under ``<data_dir>/state``. A restart loads it, so a restart is a restart; a file
that is missing, unreadable or written for another chain spec starts a new chain, and the reason
is kept (`Restore`) so the fleet can say plainly that the devnet was reset."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from mevaas_chain.contracts import load_artifact
from mevaas_local.devnet.aave import AaveMarket
from mevaas_local.devnet.deploy import Deployment
from mevaas_local.devnet.spec import ChainSpec

FORMAT_VERSION = 1
_DEPLOYMENT = TypeAdapter(Deployment)
_MARKET = TypeAdapter(AaveMarket)


@dataclass(frozen=True)
class SavedChain:
    """What a chain's state file holds."""

    anvil_state: str  # anvil_dumpState's hex payload, given back to anvil_loadState as it is
    deployment: Deployment
    market: AaveMarket | None
    head_block: int
    saved_at: datetime


@dataclass(frozen=True)
class Restore:
    """How a chain started: from its saved state (``saved`` set) or new (``reset_reason`` says why;
    empty for a first start with nothing saved before)."""

    saved: SavedChain | None
    reset_reason: str = ""

    @property
    def was_reset(self) -> bool:
        return self.saved is None and bool(self.reset_reason)


def spec_digest(spec: ChainSpec) -> str:
    """Changes when the chain's specification (tokens, pools, prices, borrowers) or the executor
    contract's code changes: a state deployed from an older build is not continued."""
    executor = load_artifact("Executor").bytecode
    return hashlib.sha256(repr(spec).encode() + executor).hexdigest()[:16]


def state_file(state_dir: Path, chain_id: int) -> Path:
    return state_dir / f"chain-{chain_id}.json"


def save(path: Path, spec: ChainSpec, saved: SavedChain) -> None:
    """Write atomically (temporary file, fsync, rename): a crash mid-write keeps the previous file."""
    document: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "chain_id": spec.chain_id,
        "spec": spec_digest(spec),
        "saved_at": saved.saved_at.isoformat(),
        "head_block": saved.head_block,
        "deployment": _DEPLOYMENT.dump_python(saved.deployment, mode="json"),
        "market": None if saved.market is None else _MARKET.dump_python(saved.market, mode="json"),
        "anvil_state": saved.anvil_state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    with partial.open("w") as out:
        json.dump(document, out)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)


def load(path: Path, spec: ChainSpec) -> Restore:
    """The saved state of ``spec``'s chain, or why there is none to use."""
    if not path.exists():
        return Restore(None, "")
    try:
        document = json.loads(path.read_text())
        if document.get("format") != FORMAT_VERSION:
            return Restore(None, f"{path} has state format {document.get('format')!r}, not {FORMAT_VERSION}")
        if document.get("chain_id") != spec.chain_id or document.get("spec") != spec_digest(spec):
            return Restore(None, f"{path} was written for another chain specification")
        market = document.get("market")
        return Restore(
            SavedChain(
                anvil_state=str(document["anvil_state"]),
                deployment=_DEPLOYMENT.validate_python(document["deployment"]),
                market=None if market is None else _MARKET.validate_python(market),
                head_block=int(document["head_block"]),
                saved_at=datetime.fromisoformat(document["saved_at"]).astimezone(UTC),
            )
        )
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
        return Restore(None, f"{path} is unreadable ({type(exc).__name__}: {str(exc)[:200]})")
