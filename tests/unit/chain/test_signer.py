"""coincurve signing equals eth_account byte for byte."""

from __future__ import annotations

import os
import random
from typing import Any

from eth_account import Account
from eth_utils.address import to_checksum_address

from mevaas_chain.keystore import SecretKey
from mevaas_chain.signer import (
    DynamicFeeTransaction,
    address_from_private_key,
    rlp_encode,
    sign_transaction,
)


def random_tx(rng: random.Random) -> dict[str, Any]:
    to = rng.choice([to_checksum_address(os.urandom(20)), None])
    data = os.urandom(rng.choice([0, 1, 4, 55, 56, 300]))
    common: dict[str, Any] = {
        "nonce": rng.choice([0, 1, 127, 128, 2**32, rng.randrange(2**64)]),
        "gas": rng.randrange(21_000, 30_000_000),
        "value": rng.choice([0, 1, rng.randrange(2**128)]),
        "data": data,
    }
    if to is not None:
        common["to"] = to
    kind = rng.choice(["legacy", "eip155", "1559"])
    if kind == "1559":
        access = [
            {
                "address": to_checksum_address(os.urandom(20)),
                "storageKeys": ["0x" + os.urandom(32).hex()] * rng.randrange(3),
            }
            for _ in range(rng.randrange(3))
        ]
        return {
            **common,
            "type": 2,
            "chainId": rng.choice([1, 10, 31337, 2**40]),
            "maxFeePerGas": rng.randrange(1, 10**12),
            "maxPriorityFeePerGas": rng.randrange(0, 10**10),
            "accessList": access,
        }
    tx = {**common, "gasPrice": rng.randrange(1, 10**12)}
    if kind == "eip155":
        tx["chainId"] = rng.choice([1, 56, 31337, 2**40])
    return tx


def test_signatures_equal_eth_account_on_random_transactions() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        key = SecretKey.generate()
        tx = random_tx(rng)
        expected = Account.sign_transaction(tx, key.reveal())
        got = sign_transaction(tx, key)
        assert got.raw == bytes(expected.raw_transaction)
        assert got.hash == bytes(expected.hash)
        assert (got.r, got.s, got.v) == (expected.r, expected.s, expected.v)
        assert address_from_private_key(key) == Account.from_key(key.reveal()).address


def test_typed_transaction_and_recovery() -> None:
    key = SecretKey.generate()
    tx = DynamicFeeTransaction(
        chain_id=31337, nonce=5, max_priority_fee_per_gas=10**9, max_fee_per_gas=3 * 10**10, gas=250_000,
        to="0x" + "ab" * 20, value=10**18, data=b"\x12\x34",
    )  # fmt: skip
    signed = sign_transaction(tx, key)
    assert Account.recover_transaction(signed.raw_hex) == address_from_private_key(key)


def test_rlp_known_vectors() -> None:
    assert rlp_encode(b"dog") == b"\x83dog"
    assert rlp_encode([b"cat", b"dog"]) == b"\xc8\x83cat\x83dog"
    assert rlp_encode(0) == b"\x80"
    assert rlp_encode(15) == b"\x0f"
    assert rlp_encode(1024) == b"\x82\x04\x00"
    assert rlp_encode([]) == b"\xc0"
    assert rlp_encode(b"a" * 56)[:2] == b"\xb8\x38"
