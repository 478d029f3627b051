"""Generate Python, gRPC and typing stubs for every proto under protos/ into libs/protos/.

Run by `make protos` (and by `make setup` when a proto changed); the output is ignored by git.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "libs" / "protos"
PACKAGE = OUT / "mevaas"


def main() -> int:
    shutil.rmtree(PACKAGE, ignore_errors=True)
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    if not protos:
        print("no .proto files under protos/", file=sys.stderr)
        return 1
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={OUT}",
        f"--grpc_python_out={OUT}",
        f"--mypy_out={OUT}",
        f"--mypy_grpc_out={OUT}",
        *protos,
    ]
    code = protoc.main(args)
    if code != 0:
        print(f"protoc failed with exit code {code}", file=sys.stderr)
        return int(code)
    # Regular packages (not namespace packages) so mypy and importers resolve them plainly.
    for directory in [PACKAGE, *(d for d in PACKAGE.rglob("*") if d.is_dir())]:
        (directory / "__init__.py").touch()
        (directory / "py.typed").touch()
    print(f"generated stubs for {len(protos)} proto files into {PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
