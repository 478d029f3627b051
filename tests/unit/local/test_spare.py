"""A warm spare does the service's imports at once, runs the service only when told, and exits
quietly when its supervisor goes away (end of input)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def _package(root: Path) -> dict[str, str]:
    package = root / "spare_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "server.py").write_text(
        "import os, pathlib\npathlib.Path(os.environ['PROBE_DIR'], 'imported').write_text(str(os.getpid()))\n"
    )
    (package / "__main__.py").write_text(
        "import os, pathlib\nfrom spare_probe import server\n"
        "pathlib.Path(os.environ['PROBE_DIR'], 'ran').write_text(str(os.getpid()))\n"
    )
    return dict(os.environ) | {
        "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PROBE_DIR": str(root),
    }


def _spare(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mevaas_local.spare", "spare_probe"], env=env, stdin=subprocess.PIPE
    )


def _until(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def test_a_spare_imports_first_and_runs_the_service_when_told(tmp_path: Path) -> None:
    spare = _spare(_package(tmp_path))
    assert spare.stdin is not None
    _until(tmp_path / "imported")
    time.sleep(0.2)
    assert not (tmp_path / "ran").exists()  # waiting for the word
    spare.stdin.write(b"start\n")
    spare.stdin.close()
    assert spare.wait(60) == 0
    # The service ran in the spare's own process, on the imports it had already done.
    assert (tmp_path / "ran").read_text() == (tmp_path / "imported").read_text() == str(spare.pid)


def test_a_spare_whose_supervisor_is_gone_exits_without_running(tmp_path: Path) -> None:
    spare = _spare(_package(tmp_path))
    assert spare.stdin is not None
    _until(tmp_path / "imported")
    spare.stdin.close()
    assert spare.wait(60) == 0
    assert not (tmp_path / "ran").exists()
