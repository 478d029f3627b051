"""The devnet relay's block building order: a bundle extending an earlier one goes first."""

from __future__ import annotations

from mevaas_local.devnet.relay import Bundle, extensions_first


def test_an_extending_bundle_takes_the_place_of_the_one_it_extends() -> None:
    user, backrun, other = b"\x01user", b"\x02backrun", b"\x03other"
    alone = Bundle([user], 5)
    unrelated = Bundle([other], 5)
    matched = Bundle([user, backrun], 5)
    assert [b.hash for b in extensions_first([alone, unrelated, matched])] == [
        matched.hash,
        alone.hash,
        unrelated.hash,
    ]
    # otherwise arrival order is kept
    assert extensions_first([unrelated, alone]) == [unrelated, alone]
    # the same transactions in a bundle of equal size are not an extension
    again = Bundle([user], 5)
    assert extensions_first([alone, again]) == [alone, again]
