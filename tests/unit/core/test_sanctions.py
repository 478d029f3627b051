"""The sanctions list loader: OFAC's SDN.CSV rows (EVM digital-currency addresses in Remarks),
one-address lines, the shipped sample, and bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mevaas_core import sanctions

SDN_ROW = (
    '123,"SOME ENTITY","-0- ","CYBER2","-0- ","-0- ","-0- ","-0- ","-0- ","-0- ","-0- ",'
    '"a.k.a. X; Digital Currency Address - ETH 0x' + "ab" * 20 + "; Digital Currency Address - XBT "
    "1BoatSLRHtKNngkdXEeobR76b53LETtpyT; Digital Currency Address - USDT 0x" + "cd" * 20 + '; alt."'
)


def test_sdn_rows_give_their_evm_addresses_only() -> None:
    entries = sanctions.parse(SDN_ROW)
    assert sorted(entries) == ["0x" + "ab" * 20, "0x" + "cd" * 20]
    entry = entries["0x" + "ab" * 20]
    assert (entry.entity, entry.program, entry.currency, entry.list_name) == (
        "SOME ENTITY",
        "CYBER2",
        "ETH",
        "OFAC-SDN",
    )
    assert entries["0x" + "cd" * 20].currency == "USDT"


def test_plain_lines_comments_and_list_names(tmp_path: Path) -> None:
    file = tmp_path / "list.txt"
    file.write_text("# comment\n0x" + "11" * 20 + ",EU\n\n0x" + "22" * 20 + "  # trailing\n" + SDN_ROW + "\n")
    listed = sanctions.load(str(file), extra="0x" + "33" * 20 + "=UK")
    assert len(listed) == 5
    assert listed.hit("0x" + "11" * 20) is not None and listed.hit("0x" + "11" * 20).list_name == "EU"  # type: ignore[union-attr]
    assert listed.hit("0x" + "22" * 20).list_name == "OFAC-SDN"  # type: ignore[union-attr]
    assert listed.hit("0x" + "33" * 20).list_name == "UK"  # type: ignore[union-attr]
    upper = "0x" + "AB" * 20
    assert [h.address for h in listed.hits([upper, "0x" + "00" * 20, upper.lower(), ""])] == [upper.lower()]


def test_the_shipped_sample_and_none() -> None:
    sample = sanctions.load()
    assert sample.hit("0x916522Fb97DE5b91448051D6BF35181C4E25829E") is not None
    assert sample.hit("0x098B716B8Aaf21512996dC57EB0615e2383E2f96") is not None
    assert len(sanctions.load("none")) == 0


def test_bad_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("not an address\n")
    with pytest.raises(sanctions.SanctionsListError, match="line 1"):
        sanctions.load(str(bad))
    with pytest.raises(sanctions.SanctionsListError, match="cannot read"):
        sanctions.load(str(tmp_path / "missing.csv"))
