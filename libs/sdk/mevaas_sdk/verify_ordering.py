"""`mevaas verify-ordering`: check a chain's fair-ordering log and the chain itself.

It reads the log (``GET /ordering/<chain id>`` of the Protect RPC, or a saved copy of it) and the
transactions' receipts from a chain JSON-RPC endpoint, then checks, failing loudly (exit 1, each
problem naming its entry):

* the chain of entries: sequence numbers 1, 2, 3, ... without a gap; each entry's hash is the
  SHA-256 of its canonical form; each entry commits to the previous entry's hash; each signature
  verifies with the log's Ed25519 key (or the one given with ``--public-key``, the trust anchor);
* the order on chain: entries whose transaction was included landed in sequence order (block,
  then position in the block); one included before an entry received ahead of it is a swap;
* the client's own receipts (``--receipts``): each is in the log exactly as it was handed out.

The canonical form is implemented here from its documentation (docs/protection.md), not shared
with the server's code, so a fault in the producer cannot hide itself from the check."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS = "0" * 64
FIELDS = (
    "chainId",
    "sequence",
    "txHash",
    "receivedAtUnixNanos",
    "prevHash",
    "entryHash",
    "signature",
    "keyId",
)
RPC_BATCH = 100

app = typer.Typer(help="Verify a chain's fair-ordering log against the chain.", no_args_is_help=True)


def canonical(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(
        {
            "chain_id": int(entry["chainId"]),
            "prev_hash": entry["prevHash"],
            "received_at_unix_nanos": int(entry["receivedAtUnixNanos"]),
            "sequence": int(entry["sequence"]),
            "tx_hash": str(entry["txHash"]).lower(),
            "v": 1,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


@dataclass(frozen=True, slots=True)
class Inclusion:
    block: int
    index: int


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    entries: int = 0
    included: int = 0
    not_included: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _public_key(hex_key: str) -> Ed25519PublicKey | None:
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))
    except ValueError:
        return None


def check_chain(entries: list[Mapping[str, Any]], public_key: str, report: Report) -> None:
    """Gaps, hashes, links and signatures, entry by entry."""
    key = _public_key(public_key)
    if key is None:
        report.problems.append(f"the log's public key {public_key!r} is not an Ed25519 key")
    key_id = hashlib.sha256(bytes.fromhex(public_key)).hexdigest()[:16] if key is not None else ""
    previous: Mapping[str, Any] | None = None
    for entry in entries:
        missing = [name for name in FIELDS if name not in entry]
        if missing:
            report.problems.append(
                f"malformed entry {entry.get('sequence', '?')}: missing {', '.join(missing)}"
            )
            previous = None
            continue
        sequence = int(entry["sequence"])
        expected = 1 if previous is None else int(previous["sequence"]) + 1
        if sequence != expected:
            report.problems.append(
                f"gap: entry {sequence} follows entry {expected - 1} (entries {expected}..{sequence - 1} missing)"
                if sequence > expected
                else f"out of order: entry {sequence} follows entry {expected - 1}"
            )
        body = canonical(entry)
        if hashlib.sha256(body).hexdigest() != entry["entryHash"]:
            report.problems.append(f"tampered: entry {sequence}'s hash does not match its contents")
        link = GENESIS if previous is None else previous["entryHash"]
        if sequence == expected and entry["prevHash"] != link:
            report.problems.append(
                f"broken chain: entry {sequence} does not commit to entry {sequence - 1}'s hash"
            )
        if key is not None:
            if entry["keyId"] != key_id:
                report.problems.append(f"entry {sequence} is signed by key {entry['keyId']}, not {key_id}")
            else:
                try:
                    key.verify(bytes.fromhex(entry["signature"]), body)
                except (InvalidSignature, ValueError):
                    report.problems.append(f"bad signature: entry {sequence}")
        previous = entry
    report.entries = len(entries)


def check_order(
    entries: list[Mapping[str, Any]],
    inclusions: Mapping[str, Inclusion | None],
    report: Report,
    *,
    first: int = 1,
    last: int | None = None,
) -> None:
    """Entries included on chain must be in sequence order (swaps named both ways)."""
    before: tuple[int, Inclusion] | None = None
    for entry in entries:
        sequence = int(entry["sequence"])
        if sequence < first or (last is not None and sequence > last):
            continue
        landed = inclusions.get(str(entry["txHash"]).lower())
        if landed is None:
            report.not_included.append(sequence)
            continue
        report.included += 1
        if before is not None and (landed.block, landed.index) < (before[1].block, before[1].index):
            report.problems.append(
                f"swap: entry {sequence} (tx {entry['txHash']}) was included at block {landed.block} "
                f"position {landed.index}, before entry {before[0]} (block {before[1].block} position "
                f"{before[1].index}) that was received ahead of it"
            )
        if before is None or (landed.block, landed.index) > (before[1].block, before[1].index):
            before = (sequence, landed)


def check_receipts(
    entries: list[Mapping[str, Any]], receipts: Iterable[Mapping[str, Any]], report: Report
) -> None:
    """Every receipt the client holds is in the log, unchanged (a log rewritten without it, or
    with another entry at its place, shows here even when it is consistent in itself)."""
    by_sequence = {int(e["sequence"]): e for e in entries if "sequence" in e}
    for receipt in receipts:
        sequence = int(receipt["sequence"])
        entry = by_sequence.get(sequence)
        if entry is None:
            report.problems.append(f"receipt {sequence} (tx {receipt.get('txHash')}) is not in the log")
            continue
        differing = [name for name in FIELDS if str(entry.get(name)) != str(receipt.get(name))]
        if differing:
            report.problems.append(
                f"receipt {sequence} differs from the log's entry in {', '.join(differing)}"
            )


def verify(
    document: Mapping[str, Any],
    inclusions: Mapping[str, Inclusion | None],
    *,
    receipts: Iterable[Mapping[str, Any]] = (),
    public_key: str = "",
    first: int = 1,
    last: int | None = None,
) -> Report:
    report = Report()
    key = public_key or str(document.get("publicKey", ""))
    if public_key and document.get("publicKey") and document["publicKey"] != public_key:
        report.problems.append(
            f"the log publishes key {document['publicKey']}, not the expected {public_key}"
        )
    entries = list(document.get("entries", []))
    check_chain(entries, key, report)
    check_order(entries, inclusions, report, first=first, last=last)
    check_receipts(entries, receipts, report)
    return report


# I/O -----------------------------------------------------------------------------------------


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def load_log(source: str) -> dict[str, Any]:
    """A log from its URL (every page) or from a file saved from it."""
    if not source.startswith(("http://", "https://")):
        loaded: dict[str, Any] = json.loads(Path(source).read_text())
        return loaded
    document: dict[str, Any] = {}
    entries: list[Any] = []
    after = 0
    separator = "&" if "?" in source else "?"
    while True:
        page = _get_json(f"{source}{separator}after={after}&limit=1000")
        document = page
        entries += page.get("entries", [])
        if page.get("next") is None:
            break
        after = int(page["next"])
    document["entries"] = entries
    return document


def inclusions_of(rpc_url: str, tx_hashes: list[str]) -> dict[str, Inclusion | None]:
    found: dict[str, Inclusion | None] = {}
    for start in range(0, len(tx_hashes), RPC_BATCH):
        chunk = tx_hashes[start : start + RPC_BATCH]
        body = json.dumps(
            [
                {"jsonrpc": "2.0", "id": i, "method": "eth_getTransactionReceipt", "params": [h]}
                for i, h in enumerate(chunk)
            ]
        ).encode()
        request = urllib.request.Request(rpc_url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            replies = {reply["id"]: reply for reply in json.loads(response.read())}
        for i, tx_hash in enumerate(chunk):
            reply = replies.get(i, {})
            if "error" in reply:
                raise typer.BadParameter(f"the chain refused a receipt lookup: {reply['error']}")
            receipt = reply.get("result")
            found[tx_hash.lower()] = (
                None
                if receipt is None
                else Inclusion(int(receipt["blockNumber"], 16), int(receipt["transactionIndex"], 16))
            )
    return found


def _receipts_file(path: Path) -> list[dict[str, Any]]:
    """Receipts as handed out: the JSON-RPC answers' ``mevaas.orderingReceipt`` or the bare
    receipts, one list."""
    loaded = json.loads(path.read_text())
    items = loaded if isinstance(loaded, list) else [loaded]
    return [item.get("mevaas", {}).get("orderingReceipt", item) for item in items]


@app.callback(invoke_without_command=True)
def verify_ordering(
    log: Annotated[
        str, typer.Option(help="The log: http(s)://<protect host>/ordering/<chain id>, or a saved file.")
    ],
    rpc: Annotated[str, typer.Option(help="The chain's JSON-RPC URL (receipts are read from it).")],
    public_key: Annotated[
        str, typer.Option(help="The expected Ed25519 public key (hex); default: the one the log publishes.")
    ] = "",
    receipts: Annotated[
        Path | None,
        typer.Option(help="JSON file of the receipts you were given.", exists=True, dir_okay=False),
    ] = None,
    from_sequence: Annotated[int, typer.Option(help="First entry whose inclusion order is checked.")] = 1,
    to_sequence: Annotated[
        int, typer.Option(help="Last entry whose inclusion order is checked (0: all).")
    ] = 0,
) -> None:
    """Check the log's chain and signatures, and that the chain included its transactions in
    receipt order. Exit 1 on any problem."""
    document = load_log(log)
    entries = document.get("entries", [])
    inclusions = inclusions_of(rpc, [str(e.get("txHash", "")).lower() for e in entries if e.get("txHash")])
    report = verify(
        document,
        inclusions,
        receipts=_receipts_file(receipts) if receipts is not None else (),
        public_key=public_key,
        first=from_sequence,
        last=to_sequence or None,
    )
    for problem in report.problems:
        typer.echo(f"FAIL {problem}", err=True)
    if not public_key:
        typer.echo(f"key: {document.get('publicKey')} (as published by the log; pass --public-key to pin it)")
    typer.echo(
        f"{report.entries} entries; {report.included} included in "
        f"{'receipt order' if report.ok else 'the order shown above'}; "
        f"{len(report.not_included)} not included"
        + (
            f" ({', '.join(map(str, report.not_included[:20]))}{', ...' if len(report.not_included) > 20 else ''})"
            if report.not_included
            else ""
        )
    )
    if not report.ok:
        typer.echo(f"verify-ordering FAILED: {len(report.problems)} problem(s)", err=True)
        raise typer.Exit(1)
    typer.echo("verify-ordering OK")
