"""Compile ``src/*.sol`` offline with the pinned npm ``solc`` (solc-js, standard JSON) and write one
artifact JSON per contract next to this module.

Reproducible: sources are keyed by file name only, the metadata hash is left out of the bytecode,
and the JSON is written with sorted keys, so a rebuild yields the same bytes.

Usage: ``python -m mevaas_chain.contracts.build [--out DIR] [--check]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mevaas_chain.contracts import ARTIFACT_DIR, CONTRACT_NAMES, SOURCE_DIR, Artifact, node_modules_dir

SOLC_VERSION = "0.8.37"
EVM_VERSION = "cancun"

# Runs solc-js from the pinned npm package: standard JSON in on stdin, out on stdout.
_NODE_SCRIPT = """
const solc = require(process.argv[1]);
const want = process.argv[2];
if (!solc.version().startsWith(want + "+")) {
  process.stderr.write("solc " + solc.version() + " is not the pinned " + want + "\\n");
  process.exit(2);
}
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => { process.stdout.write(solc.compile(input)); });
"""


def standard_input(texts: Mapping[str, str] | None = None) -> dict[str, Any]:
    """solc's standard JSON for ``texts`` (file name -> source; default: ``src/*.sol``)."""
    if texts is None:
        texts = {p.name: p.read_text() for p in sorted(SOURCE_DIR.glob("*.sol"))}
    sources = {name: {"content": text} for name, text in texts.items()}
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "optimizer": {"enabled": True, "runs": 1000},
            "evmVersion": EVM_VERSION,
            "metadata": {"bytecodeHash": "none", "appendCBOR": False},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
        },
    }


def compile_sources(texts: Mapping[str, str] | None = None) -> dict[str, Any]:
    """solc's standard JSON output for ``texts`` (default: ``src/*.sol``), with these settings."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH")
    solc_dir = node_modules_dir() / "solc"
    std_in = standard_input(texts)
    proc = subprocess.run(
        [node, "-e", _NODE_SCRIPT, str(solc_dir), SOLC_VERSION],
        input=json.dumps(std_in, sort_keys=True),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"solc failed: {proc.stderr.strip()}")
    output: dict[str, Any] = json.loads(proc.stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    return output


def compile_contracts(texts: Mapping[str, str]) -> dict[str, Artifact]:
    """Every contract in ``texts`` (file name -> source), compiled like the platform's own; tests
    use it for contracts that are not part of the platform (attackers, fakes)."""
    output = compile_sources(texts)
    return {
        name: Artifact(
            name=name,
            abi=data["abi"],
            bytecode=bytes.fromhex(data["evm"]["bytecode"]["object"]),
            deployed_bytecode=bytes.fromhex(data["evm"]["deployedBytecode"]["object"]),
        )
        for contracts in output["contracts"].values()
        for name, data in contracts.items()
    }


def artifacts() -> dict[str, str]:
    """Artifact file name -> exact file text, for every contract in CONTRACT_NAMES."""
    output = compile_sources()
    result: dict[str, str] = {}
    for source_name, contracts in output["contracts"].items():
        source_hash = hashlib.sha256((SOURCE_DIR / source_name).read_bytes()).hexdigest()
        for name, data in contracts.items():
            if name not in CONTRACT_NAMES:
                continue
            artifact = {
                "contractName": name,
                "sourceName": source_name,
                "sourceSha256": source_hash,
                "compiler": {"name": "solc-js", "version": SOLC_VERSION, "evmVersion": EVM_VERSION},
                "abi": data["abi"],
                "bytecode": "0x" + data["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
            }
            result[f"{name}.json"] = json.dumps(artifact, indent=2, sort_keys=True) + "\n"
    missing = {f"{n}.json" for n in CONTRACT_NAMES} - result.keys()
    if missing:
        raise RuntimeError(f"solc produced no artifact for {sorted(missing)}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ARTIFACT_DIR, help="directory for the artifact JSON")
    parser.add_argument("--check", action="store_true", help="fail if the committed artifacts differ")
    args = parser.parse_args(argv)
    built = artifacts()
    if args.check:
        stale = [
            n
            for n, text in built.items()
            if not (args.out / n).is_file() or (args.out / n).read_text() != text
        ]
        if stale:
            print(f"stale artifacts: {', '.join(sorted(stale))}", file=sys.stderr)
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in built.items():
        (args.out / name).write_text(text)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
