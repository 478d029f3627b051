from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from mevaas_chain.registry import ChainRegistry, load_registry

CHAIN = {
    "chain_id": 8453,
    "name": "base",
    "rpc_url": "https://base.example/rpc",
    "dexes": [
        {
            "name": "aerodrome-v2",
            "factory": "0x420dd381b31aef6683db6b902084cb0ffece40da",
            "fee_bps": 25,
            "init_code_hash": "0x" + "ab" * 32,
        }
    ],
    "tokens": [{"address": "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913", "symbol": "USDC", "decimals": 6}],
}


def test_a_new_chain_is_pure_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    yaml_file = tmp_path / "chains.yaml"
    yaml_file.write_text(
        "chains:\n  - chain_id: 8453\n    name: base\n    rpc_url: https://base.example/rpc\n"
        "    tokens: [{address: '0x833589fcd6edb6e08f4c7c32d4f71b54bda02913', symbol: USDC, decimals: 6}]\n"
    )
    monkeypatch.setenv("MEVAAS_CHAINS_FILE", str(yaml_file))
    chain = load_registry().get("base")
    assert chain.token("usdc").address == "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"

    monkeypatch.setenv("MEVAAS_CHAINS", json.dumps([CHAIN]))
    registry = load_registry()
    dex = registry.get(8453).dex_by_factory("0x420DD381b31aEf6683db6B902084cB0FFECe40Da")
    assert dex.fee_bps == 25
    round_trip = tmp_path / "out.json"
    registry.write(round_trip)
    assert load_registry(round_trip) == registry


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(ValidationError):
        ChainRegistry.model_validate({"chains": [CHAIN, CHAIN]})
    with pytest.raises(ValidationError):
        ChainRegistry.model_validate(
            {"chains": [{**CHAIN, "tokens": [{"address": "0x12", "symbol": "X", "decimals": 6}]}]}
        )
