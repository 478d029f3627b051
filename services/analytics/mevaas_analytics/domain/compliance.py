"""Compliance inputs: the sanctioned-address list counterparties are screened against, and the
data retention policy reported to compliance officers.

The sanctions list is configuration, read by the loader risk and execution use too
(mevaas_core.sanctions): `ANALYTICS_SANCTIONS_FILE` names an OFAC SDN.CSV or a file with one address
per line (optionally `address,list_name`; `#` starts a comment; empty = the devnet sample, `none` =
no list) and `ANALYTICS_SANCTIONED_ADDRESSES` adds comma-separated addresses inline (optionally
`address=list_name`). Screened counterparties of an opportunity: the pools and
the target transaction's hops' token contracts are not people, so what is screened is every
address the platform interacts with on the tenant's behalf: each hop's pool, the tokens, the
action's other parties (borrower, refund recipient, withdrawal destination) and the signing wallet
of its execution.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.analytics.v1 import analytics_pb2
from mevaas.events.v1 import events_pb2
from mevaas_analytics.domain.actions import view_of
from mevaas_core import sanctions

REJECTED = 2


@dataclass
class SanctionsList:
    addresses: dict[str, str] = field(default_factory=dict)  # lower address -> list name

    @classmethod
    def load(cls, file: str = "", inline: str = "") -> SanctionsList:
        """The list every service screens with (mevaas_core.sanctions: an OFAC SDN.CSV or one
        address per line; "" = the sample shipped for the devnet, "none" = none) plus ``inline``."""
        listed = sanctions.load(file, extra=inline)
        return cls({address: entry.list_name for address, entry in listed.entries.items()})

    def screen(
        self,
        opportunity: events_pb2.Opportunity,
        result: events_pb2.ExecutionResult | None,
        *,
        status: int,
    ) -> Iterator[analytics_pb2.SanctionsHit]:
        seen: set[str] = set()
        candidates = []
        action = view_of(opportunity)
        for hop in action.route:
            chain_id = hop.chain_id or opportunity.chain_id
            candidates += [
                (chain_id, hop.pool),
                (chain_id, hop.token_in),
                (chain_id, hop.token_out),
            ]
        candidates += [(chain_id, address) for chain_id, address in action.parties if address]
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


def ingress_hits(rows: Iterable[Any]) -> Iterator[analytics_pb2.SanctionsHit]:
    """Hits refused at the Protect RPC's (or SubmitProtectedTransaction's) ingress: the sender or
    recipient of a client's transaction was listed; nothing was sent."""
    for row in rows:
        if row["reason_code"] != events_pb2.RISK_REASON_CODE_SANCTIONED_COUNTERPARTY:
            continue
        detected = Timestamp()
        detected.FromDatetime(row["received_at"])
        listed = row["sanctioned"]
        for party in json.loads(listed) if isinstance(listed, str) else listed:
            yield analytics_pb2.SanctionsHit(
                chain_id=row["chain_id"],
                address=party["address"],
                list_name=party["list_name"],
                tx_hash=row["tx_hash"],
                detected_at=detected,
                action="refused at protected-transaction ingress",
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
