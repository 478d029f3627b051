"""Shared pytest setup: every module in tests/fixtures/ is a fixture plugin, so each area adds its
fixtures (embedded NATS, PostgreSQL, anvil, ...) without editing a shared list."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_OWN_BASETEMP = pytest.StashKey[str]()

# Embedded servers start with preexec_fn (a plain fork). gRPC's fork handlers, skipped while other
# threads use gRPC, leave the child with a broken poller that aborts it (seen as postgres exit -6).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)


def pytest_configure(config: pytest.Config) -> None:
    # A basetemp of this run's own: pytest's default (/tmp/pytest-of-<user>/pytest-N) keeps only
    # the three newest, so a concurrent run on the same machine deletes a running one's files.
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="mevaas-pytest-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_BASETEMP, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)
