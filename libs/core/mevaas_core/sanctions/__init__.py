"""Sanctions lists: the public OFAC SDN list's digital-currency addresses, loaded once and
screened before anything is sent (the Protect RPC's ingress, risk's counterparty check) and after
the fact (analytics' compliance report).

Formats read (one file may mix them, line by line):

* OFAC's ``SDN.CSV`` (https://www.treasury.gov/ofac/downloads/sdn.csv): 12 columns (ent_num,
  SDN_Name, SDN_Type, Program, Title, Call_Sign, Vess_type, Tonnage, GRT, Vess_flag, Vess_owner,
  Remarks); addresses are in Remarks as ``Digital Currency Address - <CODE> <address>;``. Only
  EVM addresses (``0x`` + 40 hex, under any currency code: ETH, USDC, USDT, ARB, BSC, ...) are
  kept; others (XBT, XMR, TRX, ...) cannot be counterparties here.
* One address per line, optionally ``address,list name`` (``#`` starts a comment): the form
  derived lists (and the operators' own additions) come in.

``ofac_sdn_sample.csv`` ships for the devnet: a real SDN row (Lazarus Group, copied from the public
list for illustration; it is not kept current) and one devnet-only demo entry. Production points
``SANCTIONS_LIST_FILE`` at the current SDN.CSV.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE = Path(__file__).parent / "ofac_sdn_sample.csv"
# SANCTIONS_LIST_FILE=none screens nothing (an explicit choice, never a silent default).
NONE = "none"
SDN_COLUMNS = 12
DEFAULT_LIST = "OFAC-SDN"
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_DIGITAL = re.compile(r"Digital Currency Address - ([A-Z0-9]+)\s+([^\s;]+)")


class SanctionsListError(ValueError):
    """A list file that cannot be read as either format."""


@dataclass(frozen=True, slots=True)
class SanctionedAddress:
    address: str  # lower case
    list_name: str
    entity: str = ""
    program: str = ""
    currency: str = ""

    def describe(self) -> str:
        who = f" ({self.entity})" if self.entity else ""
        return f"{self.address} is on the {self.list_name} sanctions list{who}"


@dataclass(frozen=True)
class SanctionsList:
    entries: Mapping[str, SanctionedAddress] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return len(self.entries)

    def hit(self, address: str) -> SanctionedAddress | None:
        return self.entries.get(address.lower()) if address else None

    def hits(self, addresses: Iterable[str]) -> list[SanctionedAddress]:
        """The listed ones among ``addresses``, once each, in a stable order."""
        found = {a.lower(): self.entries[a.lower()] for a in addresses if a and a.lower() in self.entries}
        return [found[a] for a in sorted(found)]


def parse(text: str, *, default_list: str = DEFAULT_LIST) -> dict[str, SanctionedAddress]:
    entries: dict[str, SanctionedAddress] = {}
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) >= SDN_COLUMNS:
            name, program = row[1].strip(), row[3].strip()
            for currency, address in _DIGITAL.findall(row[11]):
                if _ADDRESS.match(address):
                    key = address.lower()
                    entries[key] = SanctionedAddress(key, default_list, name, program, currency)
            continue
        address = row[0].split("#", 1)[0].strip()
        if not _ADDRESS.match(address):
            raise SanctionsListError(f"line {number}: neither an SDN.CSV row nor an address: {row[0]!r}")
        list_name = (row[1].split("#", 1)[0].strip() if len(row) > 1 else "") or default_list
        entries[address.lower()] = SanctionedAddress(address.lower(), list_name)
    return entries


def load(path: str = "", *, extra: str = "") -> SanctionsList:
    """The list in ``path`` ("" = the shipped sample, "none" = no list) plus ``extra``
    (comma-separated ``address`` or ``address=list name``)."""
    entries: dict[str, SanctionedAddress] = {}
    source = ""
    if path.strip().lower() != NONE:
        file = Path(path) if path else SAMPLE
        try:
            entries.update(parse(file.read_text()))
        except OSError as exc:
            raise SanctionsListError(f"cannot read the sanctions list {file}: {exc}") from exc
        source = str(file)
    for item in extra.split(","):
        address, _, list_name = item.partition("=")
        if address.strip():
            entries.update(parse(f"{address.strip()},{list_name.strip()}"))
    return SanctionsList(entries, source)
