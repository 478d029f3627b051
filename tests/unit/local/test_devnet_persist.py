"""Which saved devnet states are used, and why one is not."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from mevaas_local.devnet import persist
from mevaas_local.devnet.deploy import Deployment
from mevaas_local.devnet.spec import MAIN_CHAIN

SAVED = persist.SavedChain(
    anvil_state="0x1f8b",
    deployment=Deployment(
        weth="0x" + "11" * 20, tokens=[], dexes=[], pools=[], contracts={"executor": "0x" + "22" * 20}
    ),
    market=None,
    head_block=42,
    saved_at=datetime(2026, 12, 7, 6, 0, tzinfo=UTC),
)


def test_a_saved_state_round_trips(tmp_path: Path) -> None:
    path = persist.state_file(tmp_path, MAIN_CHAIN.chain_id)
    persist.save(path, MAIN_CHAIN, SAVED)
    restore = persist.load(path, MAIN_CHAIN)
    assert restore.saved == SAVED and not restore.was_reset
    assert not path.with_suffix(".json.partial").exists()


def test_nothing_saved_is_a_first_start_not_a_reset(tmp_path: Path) -> None:
    restore = persist.load(tmp_path / "chain-31337.json", MAIN_CHAIN)
    assert restore.saved is None and not restore.was_reset


def test_a_state_of_another_spec_or_garbage_is_a_reset_with_its_reason(tmp_path: Path) -> None:
    path = persist.state_file(tmp_path, MAIN_CHAIN.chain_id)
    persist.save(path, replace(MAIN_CHAIN, weth_usd_price=1.0), SAVED)
    other = persist.load(path, MAIN_CHAIN)
    assert other.was_reset and "another chain specification" in other.reset_reason
    path.write_text("{not json")
    garbage = persist.load(path, MAIN_CHAIN)
    assert garbage.was_reset and "unreadable" in garbage.reset_reason
