"""Compliance inputs: the sanctioned-address list counterparties are screened against, and the
data retention policy reported to compliance officers.

The sanctions list is configuration: `ANALYTICS_SANCTIONS_FILE` names a file with one address per
line (optionally `address,list_name`; `#` starts a comment) and `ANALYTICS_SANCTIONED_ADDRESSES`
adds comma-separated addresses inline (optionally `address=list_name`). Screened counterparties of an opportunity: the pools and
the target transaction's hops' token contracts are not people, so what is screened is every
address the platform interacts with on the tenant's behalf: each hop's pool, the tokens, and the
signing wallet of its execution.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.analytics.v1 import analytics_pb2
from mevaas.events.v1 import events_pb2

REJECTED = 2


@dataclass
class SanctionsList:
    addresses: dict[str, str] = field(default_factory=dict)  # lower address -> list name

    @classmethod
    def load(cls, file: str = "", inline: str = "", default_list: str = "OFAC-SDN") -> SanctionsList:
        entries: dict[str, str] = {}
        lines = Path(file).read_text().splitlines() if file else []
        pairs = [line.split("#", 1)[0].partition(",") for line in lines]
        pairs += [item.partition("=") for item in inline.split(",")]
        for address, _, list_name in pairs:
            if not address.strip():
                continue
            entries[address.strip().lower()] = list_name.strip() or default_list
        return cls(entries)

    def screen(
        self,
        opportunity: events_pb2.Opportunity,
        result: events_pb2.ExecutionResult | None,
        *,
        status: int,
    ) -> Iterator[analytics_pb2.SanctionsHit]:
        seen: set[str] = set()
        candidates = []
        for hop in opportunity.hops:
            candidates += [
                (hop.chain_id, hop.pool),
                (hop.chain_id, hop.token_in),
                (hop.chain_id, hop.token_out),
            ]
        if result is not None and result.wallet_address:
            candidates.append((result.chain_id, result.wallet_address))
        for chain_id, address in candidates:
            key = address.lower()
            if key in seen or key not in self.addresses:
                continue
            seen.add(key)
            detected = Timestamp()
            detected.CopyFrom(opportunity.detected_at)
            yield analytics_pb2.SanctionsHit(
                chain_id=chain_id,
                address=address,
                list_name=self.addresses[key],
                opportunity_id=opportunity.opportunity_id,
                tx_hash=result.tx_hashes[0] if result is not None and result.tx_hashes else "",
                detected_at=detected,
                action="rejected"
                if status == REJECTED
                else "executed"
                if result is not None
                else "not executed",
            )


@dataclass(frozen=True)
class RetentionSettings:
    audit_days: int = 2555  # 7 years
    trade_days: int = 1825  # 5 years
    personal_data_days: int = 30
    legal_hold: bool = False

    def proto(self) -> analytics_pb2.RetentionPolicy:
        return analytics_pb2.RetentionPolicy(
            audit_retention_days=self.audit_days,
            trade_retention_days=self.trade_days,
            personal_data_retention_days=self.personal_data_days,
            legal_hold=self.legal_hold,
        )
