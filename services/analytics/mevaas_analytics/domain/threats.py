"""Sandwich threats on the tenant's own pending swaps (strategy's ``protect.<tenant>.threat``), as
the read model records and the execution report shows them.

A threat is checked once on arrival (`parse_threat`): one that no redelivery could make valid
(no hash, no path, an amount that is not an integer of 0-78 digits) is refused with
`MalformedThreat`. Its two amounts, what the victim would have lost (`exposure`,
in the swap's output token when exact in, its input token when exact out) and what the sandwich
would have extracted (`attacker_profit`, in the sandwiched hop's input token), are valued in USD
with the one price source as of the threat's block (the head it was computed on). A token whose
decimals or price is unknown stays unpriced with the reason, never 0; totals add priced values
only and count the unpriced ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

from mevaas.analytics.v1 import analytics_pb2
from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_analytics.domain import MalformedEvent
from mevaas_analytics.domain.report_tables import Row
from mevaas_chain.pricing import Priced, PriceSource, TokenInfo, normalize_token, to_decimal, valuate

VICTIM_LOSS = "victim_loss"
ATTACKER_PROFIT = "attacker_profit"
COMPONENTS = (VICTIM_LOSS, ATTACKER_PROFIT)
# What the price source prices in (docs/pricing.md).
CURRENCY = "USD"


class MalformedThreat(MalformedEvent):
    """A threat event that can never be recorded."""


@dataclass(frozen=True)
class Threat:
    tenant_id: str
    event_id: str
    chain_id: int
    # Lower-case.
    tx_hash: str
    sender: str
    block_number: int
    pool: str
    token: str
    attacker_profit: int
    exposure_token: str
    exposure: int
    safe_slippage_bps: int
    seen_at: datetime


@dataclass(frozen=True)
class ThreatValue:
    component: str
    # Lower-case address.
    token: str
    amount: int
    # None: the chain registry does not know the token (then it is unpriced).
    decimals: int | None
    priced: Priced | None
    unpriced_reason: str


# numeric(78, 0): a longer amount would fail the whole batch's transaction, not just its own row.
MAX_DIGITS = 78


def _amount(text: str, field: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text.lstrip("0")) <= MAX_DIGITS):
        raise MalformedThreat(f"{field} {text[:100]!r} is not a non-negative integer of base units")
    return int(text)


def parse_threat(event: events_pb2.SandwichThreat) -> Threat:
    """The threat as recorded, or `MalformedThreat`."""
    if not event.tx_hash or not event.chain_id or not event.tenant_id:
        raise MalformedThreat("tenant_id, chain_id and tx_hash are required")
    path = list(event.swap.path)
    if len(path) < 2 or not event.token:
        raise MalformedThreat("the swap's path (2 tokens or more) and the threat's token are required")
    return Threat(
        tenant_id=event.tenant_id,
        event_id=event.event_id,
        chain_id=event.chain_id,
        tx_hash=event.tx_hash.lower(),
        sender=event.sender.lower(),
        block_number=event.block_number,
        pool=event.pool.lower(),
        token=normalize_token(event.token),
        attacker_profit=_amount(event.attacker_profit, "attacker_profit"),
        exposure_token=normalize_token(path[-1] if event.swap.exact_in else path[0]),
        exposure=_amount(event.exposure, "exposure"),
        safe_slippage_bps=event.safe_slippage_bps,
        seen_at=event.occurred_at.ToDatetime(tzinfo=UTC),
    )


def value_threat(
    threat: Threat, prices: PriceSource, tokens: Mapping[tuple[int, str], TokenInfo]
) -> list[ThreatValue]:
    """Both amounts of the threat valued as of its block."""
    out = []
    for component, token, amount in (
        (VICTIM_LOSS, threat.exposure_token, threat.exposure),
        (ATTACKER_PROFIT, threat.token, threat.attacker_profit),
    ):
        info = tokens.get((threat.chain_id, token))
        if info is None:
            out.append(
                ThreatValue(
                    component, token, amount, None, None, f"decimals of {threat.chain_id}:{token} unknown"
                )
            )
            continue
        valuation = valuate(
            prices, threat.chain_id, token, amount, info.decimals, at_block=threat.block_number or None
        )
        if isinstance(valuation, Priced):
            out.append(ThreatValue(component, token, amount, info.decimals, valuation, ""))
        else:
            out.append(ThreatValue(component, token, amount, info.decimals, None, valuation.reason))
    return out


@dataclass(frozen=True)
class Total:
    # Sum of the priced USD values (each as recorded, 18 places), exact.
    usd: Decimal
    unpriced: int


def totals(values: Iterable[tuple[str, Decimal | None]]) -> dict[str, Total]:
    """(component, recorded USD value or None when unpriced) -> per-component total."""
    # Summed as rationals: Decimal addition rounds to its context's 28 digits.
    sums = dict.fromkeys(COMPONENTS, Fraction(0))
    unpriced = dict.fromkeys(COMPONENTS, 0)
    for component, usd in values:
        if usd is None:
            unpriced[component] += 1
        else:
            sums[component] += Fraction(usd)
    return {c: Total(to_decimal(sums[c]), unpriced[c]) for c in COMPONENTS}


def _value_proto(
    chain_id: int, row: Row, tokens: Mapping[tuple[int, str], TokenInfo]
) -> analytics_pb2.ThreatValue:
    address = row["token"].partition(":")[2]
    info = tokens.get((chain_id, address))
    out = analytics_pb2.ThreatValue(
        token=common_pb2.Token(
            chain_id=chain_id,
            address=address,
            symbol=info.symbol if info else "",
            decimals=row["decimals"] if row["decimals"] is not None else 0,
        ),
        amount=str(int(row["amount"])),
        priced=row["priced"],
        price_source=row["price_source"],
        observed_block=row["price_block"],
        unpriced_reason=row["unpriced_reason"],
    )
    if row["priced"]:
        out.value.CopyFrom(common_pb2.Money(currency_code=CURRENCY, amount=_text(row["usd_value"])))
        out.price.value = _text(row["usd_price"])
        if row["price_observed_at"] is not None:
            out.observed_at.FromDatetime(row["price_observed_at"])
    return out


def _text(value: Decimal) -> str:
    return format(value, "f")


def threat_report(
    threats: Sequence[Row],
    values: Mapping[tuple[int, str, str], Row],
    tokens: Mapping[tuple[int, str], TokenInfo],
) -> tuple[list[analytics_pb2.ThreatRecord], analytics_pb2.ThreatTotals]:
    """The report's threats (rows of analytics.threats with their recorded valuations) and their
    totals over the priced values."""
    records = []
    for t in threats:
        chain_id, tx_hash = t["chain_id"], t["tx_hash"]
        record = analytics_pb2.ThreatRecord(
            chain_id=chain_id,
            tx_hash=tx_hash,
            victim=t["sender"],
            block_number=t["block_number"],
            pool=t["pool"],
            safe_slippage_bps=t["safe_slippage_bps"],
            # A threat and its valuations are written in one transaction: they are always there.
            victim_loss=_value_proto(chain_id, values[(chain_id, tx_hash, VICTIM_LOSS)], tokens),
            attacker_profit=_value_proto(chain_id, values[(chain_id, tx_hash, ATTACKER_PROFIT)], tokens),
        )
        record.seen_at.FromDatetime(t["seen_at"])
        records.append(record)
    sums = totals(
        (component, Decimal(r.value.amount) if r.priced else None)
        for record in records
        for component, r in ((VICTIM_LOSS, record.victim_loss), (ATTACKER_PROFIT, record.attacker_profit))
    )
    return records, analytics_pb2.ThreatTotals(
        threats=len(records),
        victim_loss=common_pb2.Money(currency_code=CURRENCY, amount=_text(sums[VICTIM_LOSS].usd)),
        victim_loss_unpriced_count=sums[VICTIM_LOSS].unpriced,
        attacker_profit=common_pb2.Money(currency_code=CURRENCY, amount=_text(sums[ATTACKER_PROFIT].usd)),
        attacker_profit_unpriced_count=sums[ATTACKER_PROFIT].unpriced,
    )
