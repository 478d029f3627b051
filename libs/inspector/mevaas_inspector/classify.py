"""Arbitrage and sandwich classification over decoded swaps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mevaas_inspector.models import Arbitrage, FlashLoan, GasInfo, Sandwich, Swap

# Routers trade on behalf of users; a swap paid out to a router is never the sandwicher's own.
ROUTERS = frozenset(
    {
        "0x7a250d5630b4cf539739df2c5dacb4c659f2488d",  # Uniswap V2 router 02
        "0xf164fc0ec4e93095b804a4795bbe1e041497b92a",  # Uniswap V2 router 01
        "0xd9e1ce17f2641f24ae83637ab66a2cca9c378b9f",  # Sushiswap router
        "0xe592427a0aece92de3edee1f18e0157c05861564",  # Uniswap V3 SwapRouter
        "0x68b3465833fb72a70ecdf485e0e4c7bd8665fc45",  # Uniswap V3 SwapRouter02
        "0x3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad",  # Uniswap universal router
        "0xef1c6e67703c7bd7107eed8303fbe6ec2554bf6b",  # Uniswap universal router (old)
        "0x11111112542d85b3ef69ae05771c2dccff4faa26",  # 1inch v3
        "0x1111111254fb6c44bac0bed2854e76f90643097d",  # 1inch v4
        "0x1111111254eeb25477b68fb85ed929f73a960582",  # 1inch v5
        "0xdef1c0ded9bec7f1a1670819833240f027b25eff",  # 0x exchange proxy
    }
)


def amounts_match(a: int, b: int) -> bool:
    """The reference's 1% tolerance, |a-b| / ((a+b)/2) < 1%, in exact integers."""
    if a + b == 0:
        return True
    return 200 * abs(a - b) < a + b


def _links(out_swap: Swap, in_swap: Swap) -> bool:
    return (
        out_swap.token_out_address == in_swap.token_in_address
        and (
            out_swap.contract_address == in_swap.from_address
            or out_swap.to_address in (in_swap.contract_address, in_swap.from_address)
        )
        and amounts_match(out_swap.token_out_amount, in_swap.token_in_amount)
    )


def _shortest_route(
    start: Swap, ends: Sequence[Swap], candidates: Sequence[Swap], pools: frozenset[str], limit: int | None
) -> list[Swap] | None:
    """Shortest chain start -> ... -> one of `ends`. Unlike the reference, a pool already on the
    route is never entered again: trading into and back out of one pool is not an arbitrage."""
    if limit is not None and limit < 2:
        return None
    for end in ends:
        if end.contract_address not in pools and _links(start, end):
            return [start, end]
    if limit is not None and limit == 2:
        return None
    best: list[Swap] | None = None
    remaining_limit = None if limit is None else limit - 1
    for nxt in candidates:
        if nxt.contract_address in pools or not _links(start, nxt):
            continue
        rest = [s for s in candidates if s is not nxt]
        route = _shortest_route(nxt, ends, rest, pools | {nxt.contract_address}, remaining_limit)
        if route is not None and (best is None or len(route) < len(best)):
            best = route
            remaining_limit = len(route) - 1
    return None if best is None else [start, *best]


def arbitrages_in_tx(
    swaps: Sequence[Swap], flash_loans: Sequence[FlashLoan], gas: GasInfo | None
) -> list[Arbitrage]:
    """Swaps of one transaction that start and end in the same token at the same account.
    Profit is charged the fees of flash loans taken in the profit token: the borrowed leg itself
    is never a swap, and what the lender kept is a cost of the trade."""
    pools = {s.contract_address for s in swaps}
    starts: list[tuple[Swap, list[Swap]]] = []
    for i, start in enumerate(swaps):
        if start.from_address in pools:
            continue
        ends = [
            end
            for j, end in enumerate(swaps)
            if j != i
            and end.token_out_address == start.token_in_address
            and end.contract_address != start.contract_address
            and end.to_address == start.from_address
        ]
        if ends:
            starts.append((start, ends))
    found: list[Arbitrage] = []
    used: set[int] = set()
    for start, ends in starts:
        if id(start) in used:
            continue
        open_ends = [e for e in ends if id(e) not in used]
        if not open_ends:
            continue
        candidates = [s for s in swaps if s is not start and all(s is not e for e in open_ends)]
        route = _shortest_route(start, open_ends, candidates, frozenset({start.contract_address}), None)
        if route is None:
            continue
        used.update(id(s) for s in route)
        token = start.token_in_address
        fee = sum(f.fee for f in flash_loans if f.token_address == token)
        gross = route[-1].token_out_amount - start.token_in_amount
        found.append(
            Arbitrage(
                transaction_hash=start.transaction_hash,
                transaction_position=start.transaction_position,
                account_address=start.from_address,
                profit_token_address=token,
                start_amount=start.token_in_amount,
                end_amount=route[-1].token_out_amount,
                gross_profit_amount=gross,
                flash_loan_fee=fee,
                profit_amount=gross - fee,
                swaps=tuple(route),
                error=next((s.error for s in route if s.error is not None), None),
                gas=gas,
            )
        )
    if len(found) > 1:
        found = [a for a in found if a.swaps[0].trace_address < a.swaps[-1].trace_address]
    return found


def prorated_profit(front: Swap, back: Swap) -> int:
    """Profit on the matched size: the backrun may sell less (or more) than the frontrun bought,
    and only the overlapping quantity's cost and proceeds belong to this sandwich."""
    bought, sold = front.token_out_amount, back.token_in_amount
    if bought == sold or 0 in (bought, sold):
        return back.token_out_amount - front.token_in_amount
    matched = min(bought, sold)
    return back.token_out_amount * matched // sold - front.token_in_amount * matched // bought


def find_sandwiches(swaps: Sequence[Swap], gas: Mapping[str, GasInfo]) -> list[Sandwich]:
    ordered = sorted(swaps, key=lambda s: (s.transaction_position, s.trace_address))
    by_pool: dict[str, list[Swap]] = {}
    for swap in ordered:
        by_pool.setdefault(swap.contract_address, []).append(swap)
    # In a routed trade a hop pays out to the next pool; that pool is not a sandwicher.
    pools = frozenset(by_pool)
    found: list[Sandwich] = []
    for pool_swaps in by_pool.values():
        if len(pool_swaps) < 3:
            continue
        for k, front in enumerate(pool_swaps):
            if front.to_address in pools:
                continue
            sandwich = _sandwich_from(front, pool_swaps[k + 1 :], gas)
            if sandwich is not None:
                found.append(sandwich)
    found.sort(key=lambda s: (s.frontrun_swap.transaction_position, s.frontrun_swap.trace_address))
    return found


def _sandwich_from(front: Swap, rest: Sequence[Swap], gas: Mapping[str, GasInfo]) -> Sandwich | None:
    sandwicher = front.to_address
    if sandwicher in ROUTERS or front.error is not None:
        return None
    victims: list[Swap] = []
    for other in rest:
        if other.transaction_hash == front.transaction_hash or other.error is not None:
            continue
        same_way = (
            other.token_in_address == front.token_in_address
            and other.token_out_address == front.token_out_address
        )
        reverse = (
            other.token_in_address == front.token_out_address
            and other.token_out_address == front.token_in_address
        )
        if same_way and other.from_address != sandwicher:
            victims.append(other)
        elif reverse and other.from_address == sandwicher and victims:
            victims = [v for v in victims if v.transaction_hash != other.transaction_hash]
            if not victims:
                return None
            return Sandwich(
                sandwicher_address=sandwicher,
                frontrun_swap=front,
                backrun_swap=other,
                sandwiched_swaps=tuple(victims),
                profit_token_address=front.token_in_address,
                profit_amount=prorated_profit(front, other),
                unprorated_profit_amount=other.token_out_amount - front.token_in_amount,
                frontrun_gas=gas.get(front.transaction_hash),
                backrun_gas=gas.get(other.transaction_hash),
            )
    return None
