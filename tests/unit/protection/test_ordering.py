"""The fair-ordering log as execution writes it (protection/domain/ordering.py), checked by the
independent verifier of `mevaas verify-ordering` (mevaas_sdk.verify_ordering): a sound log
passes; a gap, a tampered entry, a broken link, a foreign signature, a swap on chain or a receipt
the log lost each fail, naming the entry."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mevaas_execution.protection.domain.ordering import (
    GENESIS,
    Entry,
    next_entry,
    public_key_hex,
    signature_valid,
)
from mevaas_sdk.verify_ordering import Inclusion, verify

CHAIN = 31337


def _log(count: int, key: Ed25519PrivateKey, *, clock: list[int] | None = None) -> list[Entry]:
    entries: list[Entry] = []
    for i in range(count):
        now = clock[i] if clock else 1_700_000_000_000_000_000 + i
        tx_hash = "0x" + hashlib.sha256(f"tx{i}".encode()).hexdigest()
        entries.append(next_entry(entries[-1] if entries else None, CHAIN, tx_hash, now, key))
    return entries


def _document(entries: list[Entry], key: Ed25519PrivateKey) -> dict[str, Any]:
    return {
        "chainId": CHAIN,
        "publicKey": public_key_hex(key.public_key()),
        "entries": [e.view() for e in entries],
    }


def _in_order(entries: list[Entry], per_block: int = 3) -> dict[str, Inclusion | None]:
    return {e.tx_hash: Inclusion(100 + i // per_block, i % per_block) for i, e in enumerate(entries)}


def test_entries_chain_and_sign() -> None:
    key = Ed25519PrivateKey.generate()
    entries = _log(3, key)
    assert [e.sequence for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS
    assert entries[1].prev_hash == entries[0].entry_hash and entries[2].prev_hash == entries[1].entry_hash
    assert hashlib.sha256(entries[1].body()).hexdigest() == entries[1].entry_hash
    assert all(signature_valid(e, key.public_key()) for e in entries)
    assert not signature_valid(entries[0], Ed25519PrivateKey.generate().public_key())


def test_a_clock_stepping_back_never_orders_time_backwards() -> None:
    entries = _log(3, Ed25519PrivateKey.generate(), clock=[50, 40, 60])
    assert [e.received_at_unix_nanos for e in entries] == [50, 50, 60]


def test_a_sound_log_included_in_receipt_order_passes() -> None:
    key = Ed25519PrivateKey.generate()
    entries = _log(10, key)
    inclusions = _in_order(entries)
    inclusions[entries[4].tx_hash] = None  # expired: not on chain, not a swap
    report = verify(_document(entries, key), inclusions, receipts=[entries[2].view()])
    assert report.ok, report.problems
    assert report.entries == 10 and report.included == 9 and report.not_included == [5]


def test_a_tampered_entry_fails_naming_it() -> None:
    key = Ed25519PrivateKey.generate()
    entries = _log(5, key)
    document = _document(entries, key)
    document["entries"][2]["txHash"] = "0x" + "ab" * 32
    report = verify(document, _in_order(entries))
    assert not report.ok
    assert "tampered: entry 3's hash does not match its contents" in report.problems
    assert "bad signature: entry 3" in report.problems


def test_a_rehashed_entry_breaks_the_chain_and_its_signature() -> None:
    """An entry rewritten with a recomputed hash: the next entry no longer links to it, and the
    forger cannot sign it."""
    key = Ed25519PrivateKey.generate()
    entries = _log(5, key)
    forged = _rehash(entries[1], tx_hash="0x" + "cd" * 32)
    document = _document([entries[0], forged, *entries[2:]], key)
    report = verify(document, {})
    assert "broken chain: entry 3 does not commit to entry 2's hash" in report.problems
    assert "bad signature: entry 2" in report.problems
    assert not any("tampered" in p for p in report.problems)


def _fields(entry: Entry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in Entry.__slots__}


def _rehash(entry: Entry, *, tx_hash: str) -> Entry:
    values = _fields(entry) | {"tx_hash": tx_hash}
    changed = Entry(**values)
    return Entry(**(values | {"entry_hash": hashlib.sha256(changed.body()).hexdigest()}))


def test_a_gap_fails() -> None:
    key = Ed25519PrivateKey.generate()
    entries = _log(6, key)
    report = verify(_document(entries[:3] + entries[4:], key), _in_order(entries))
    assert "gap: entry 5 follows entry 3 (entries 4..4 missing)" in report.problems


def test_a_swap_on_chain_fails() -> None:
    key = Ed25519PrivateKey.generate()
    entries = _log(6, key)
    inclusions = _in_order(entries)
    inclusions[entries[2].tx_hash], inclusions[entries[3].tx_hash] = (
        inclusions[entries[3].tx_hash],
        inclusions[entries[2].tx_hash],
    )
    report = verify(_document(entries, key), inclusions)
    assert len(report.problems) == 1, report.problems
    assert report.problems[0] == (
        f"swap: entry 4 (tx {entries[3].tx_hash}) was included at block 100 position 2, before entry 3 "
        "(block 101 position 0) that was received ahead of it"
    )
    # The range checked can leave the swap out (entries checked one by one elsewhere).
    assert verify(_document(entries, key), inclusions, first=4).ok


def test_a_foreign_key_and_a_lost_receipt_fail() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    entries = _log(3, key)
    pinned = verify(_document(entries, key), {}, public_key=public_key_hex(other.public_key()))
    assert any("not the expected" in p for p in pinned.problems)
    assert any("is signed by key" in p for p in pinned.problems)
    # A log rebuilt without entry 3 and re-signed by its operator is sound in itself; the client's
    # receipt shows it.
    receipt = entries[2].view()
    rebuilt = _log(2, key)
    report = verify(_document(rebuilt, key), {}, receipts=[receipt])
    assert report.problems == [f"receipt 3 (tx {receipt['txHash']}) is not in the log"]
    changed = copy.deepcopy(receipt) | {"receivedAtUnixNanos": "1"}
    report = verify(_document(entries, key), {}, receipts=[changed])
    assert report.problems == ["receipt 3 differs from the log's entry in receivedAtUnixNanos"]
