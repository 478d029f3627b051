"""The committed artifacts are exactly what the pinned solc makes of the sources."""

from __future__ import annotations

import pytest

from mevaas_chain.contracts import ARTIFACT_DIR, CONTRACT_NAMES, load_artifact
from mevaas_chain.contracts.build import artifacts

pytestmark = pytest.mark.integration


def test_rebuild_is_byte_identical_to_committed_artifacts() -> None:
    first = artifacts()
    second = artifacts()
    assert first == second
    for name in CONTRACT_NAMES:
        assert (ARTIFACT_DIR / f"{name}.json").read_text() == first[f"{name}.json"]
        assert load_artifact(name).bytecode
