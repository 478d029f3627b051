"""Inspector throughput over the mainnet fixture blocks, JSON parsing included, against a port of
the reference pipeline (mev-inspect-py) in the same run, results checked equal.

The baseline runs the reference's pipeline in its style: stdlib JSON into dicts, every trace
parsed into a pydantic model, every call whose selector one of the reference's classifier ABIs
knows decoded with eth_abi into named inputs (as its TraceClassifier does, whether or not the call
turns out to matter), then transfers, swaps and liquidations read from the decoded calls, the
transfers before and inside each swap found by scanning its transaction's traces. It classifies
Uniswap V2/V3 swaps and Aave/Compound liquidations with the reference's rules (and the
reference's known faults, which the unit tests check against). Before timing, the two are
checked equal where both classify: the same V2/V3 swaps and liquidations; the arbitrages and
sandwiches that differ are listed with the rule that explains them.

Run: .venv/bin/python bench/bench_inspector.py [--rounds N]"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak
from pydantic import BaseModel

from mevaas_inspector import inspect_block

ETH = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
ROUTERS = {"0x7a250d5630b4cf539739df2c5dacb4c659f2488d", "0x68b3465833fb72a70ecdf485e0e4c7bd8665fc45"}
AAVE_POOLS = {"0x398ec7346dcd622edc5ae82352f02be94c62d119", "0x7d2768de32b0b80b7a3454c06bdac94a69ddc7a9"}


@dataclass
class NSwap:
    tx: str
    position: int
    trace_address: list[int]
    pool: str
    from_address: str
    to_address: str
    token_in: str
    amount_in: int
    token_out: str
    amount_out: int
    error: str | None


@dataclass
class NTransfer:
    tx: str
    trace_address: list[int]
    token: str
    from_address: str
    to_address: str
    amount: int


@dataclass
class NaiveResult:
    swaps: list[NSwap]
    arbitrages: list[dict[str, Any]]
    sandwiches: list[dict[str, Any]]
    liquidations: list[dict[str, Any]]


# The reference's classifier ABIs for what this port classifies, and the calls around them its
# classifier decodes too (ERC-20's spec applies to every contract).
REFERENCE_ABIS = (
    "transfer(address recipient,uint256 amount)",
    "transferFrom(address sender,address recipient,uint256 amount)",
    "approve(address spender,uint256 amount)",
    "balanceOf(address account)",
    "deposit()",
    "withdraw(uint256 wad)",
    "swap(uint256 amount0Out,uint256 amount1Out,address to,bytes data)",
    "swap(address recipient,bool zeroForOne,int256 amountSpecified,uint160 sqrtPriceLimitX96,bytes data)",
    "getReserves()",
    "sync()",
    "skim(address to)",
    "flash(address recipient,uint256 amount0,uint256 amount1,bytes data)",
    "exchange(int128 i,int128 j,uint256 dx,uint256 min_dy)",
    "exchange_underlying(int128 i,int128 j,uint256 dx,uint256 min_dy)",
    "swapExactAmountIn(address tokenIn,uint256 tokenAmountIn,address tokenOut,uint256 minAmountOut,uint256 maxPrice)",
    "liquidationCall(address collateralAsset,address debtAsset,address user,uint256 debtToCover,bool receiveAToken)",
    "liquidateBorrow(address borrower,uint256 repayAmount,address cTokenCollateral)",
    "liquidateBorrow(address borrower,address cTokenCollateral)",
    "seize(address liquidator,address borrower,uint256 seizeTokens)",
)


def _abi_entry(declaration: str) -> tuple[str, tuple[str, str, list[str], tuple[str, ...]]]:
    """selector -> (name, signature, argument types, argument names) of `name(type arg,...)`."""
    name, rest = declaration.split("(", 1)
    params = [p.split(" ") for p in rest[:-1].split(",")] if rest != ")" else []
    types = [t for t, _ in params]
    signature = f"{name}({','.join(types)})"
    return "0x" + keccak(text=signature)[:4].hex(), (name, signature, types, tuple(n for _, n in params))


_SELECTORS = dict(_abi_entry(d) for d in REFERENCE_ABIS)
UNIV2_SWAP = "swap(uint256,uint256,address,bytes)"
UNIV3_SWAP = "swap(address,bool,int256,uint160,bytes)"


class RefTrace(BaseModel):
    """One trace as the reference models it."""

    type: str
    call_type: str | None
    from_address: str
    to_address: str | None
    input: str
    value: int
    trace_address: list[int]
    transaction_hash: str | None
    transaction_position: int | None
    error: str | None


class DecodedCall(BaseModel):
    """A trace with its call decoded against the classifier ABIs (no name: no ABI knows it, or
    its calldata does not decode, which the reference also leaves unclassified)."""

    trace: RefTrace
    function_name: str | None = None
    function_signature: str | None = None
    inputs: dict[str, Any] | None = None
    # A selector an ABI knows whose calldata did not decode (e.g. an address word with dirty high
    # bytes, which eth_abi refuses).
    undecodable: bool = False


def classify(traces: list[dict[str, Any]]) -> list[DecodedCall]:
    out: list[DecodedCall] = []
    for t in traces:
        action = t["action"]
        trace = RefTrace(
            type=t["type"],
            call_type=action.get("callType"),
            from_address=action.get("from", "").lower(),
            to_address=(action.get("to") or "").lower() or None,
            input=action.get("input", "0x").lower(),
            value=int(action.get("value", "0x0"), 16),
            trace_address=t["trace_address"],
            transaction_hash=t.get("transaction_hash"),
            transaction_position=t.get("transaction_position"),
            error=t.get("error"),
        )
        known = _SELECTORS.get(trace.input[:10])
        if known is None or trace.type != "call":
            out.append(DecodedCall(trace=trace))
            continue
        name, signature, types, names = known
        try:
            values = decode(types, bytes.fromhex(trace.input[10:]), strict=False) if types else ()
        except (DecodingError, ValueError, OverflowError):
            out.append(DecodedCall(trace=trace, undecodable=True))
            continue
        inputs = {n: v.lower() if isinstance(v, str) else v for n, v in zip(names, values, strict=True)}
        out.append(DecodedCall(trace=trace, function_name=name, function_signature=signature, inputs=inputs))
    return out


def _is_call(c: DecodedCall) -> bool:
    return c.trace.type == "call" and (c.trace.call_type or "call") == "call"


def _transfer(c: DecodedCall) -> NTransfer | None:
    t = c.trace
    if not _is_call(c) or t.transaction_hash is None:
        return None
    tx, ta = t.transaction_hash, t.trace_address
    if t.input == "0x" and t.value > 0:
        return NTransfer(tx, ta, ETH, t.from_address, t.to_address or "", t.value)
    if c.inputs is None or t.to_address is None:
        return None
    if c.function_signature == "transfer(address,uint256)":
        return NTransfer(tx, ta, t.to_address, t.from_address, c.inputs["recipient"], c.inputs["amount"])
    if c.function_signature == "transferFrom(address,address,uint256)":
        i = c.inputs
        return NTransfer(tx, ta, t.to_address, i["sender"], i["recipient"], i["amount"])
    return None


def _is_child(child: list[int], parent: list[int]) -> bool:
    return len(child) > len(parent) and child[: len(parent)] == parent


def _drop_nested(transfers: list[NTransfer]) -> list[NTransfer]:
    kept: list[NTransfer] = []
    seen: list[list[int]] = []
    for tr in sorted(transfers, key=lambda x: x.trace_address):
        if not any(_is_child(tr.trace_address, p) for p in seen):
            kept.append(tr)
        seen.append(tr.trace_address)
    return kept


def by_transaction(calls: list[DecodedCall]) -> dict[str, list[DecodedCall]]:
    grouped: dict[str, list[DecodedCall]] = {}
    for c in calls:
        if c.trace.transaction_hash is not None:
            grouped.setdefault(c.trace.transaction_hash, []).append(c)
    return grouped


def naive_swaps(calls: list[DecodedCall]) -> list[NSwap]:
    swaps: list[NSwap] = []
    for tx, tx_calls in by_transaction(calls).items():
        for c in tx_calls:
            t = c.trace
            if not _is_call(c) or c.inputs is None:
                continue
            if c.function_signature == UNIV2_SWAP:
                recipient = c.inputs["to"]
            elif c.function_signature == UNIV3_SWAP:
                recipient = c.inputs["recipient"]
            else:
                continue
            ta = t.trace_address
            pool = t.to_address or ""
            # The transaction's transfers before and inside the swap, by scanning its traces.
            prior = _drop_nested(
                [
                    tr
                    for o in tx_calls
                    if o.trace.trace_address < ta
                    for tr in [_transfer(o)]
                    if tr is not None
                ]
            )
            children = _drop_nested(
                [
                    tr
                    for o in tx_calls
                    if _is_child(o.trace.trace_address, ta)
                    for tr in [_transfer(o)]
                    if tr is not None
                ]
            )
            if t.value > 0:
                ins = [NTransfer(tx, ta, ETH, t.from_address, pool, t.value)]
            else:
                ins = [x for x in prior if x.to_address == pool] or [
                    x for x in children if x.to_address == pool
                ]
            outs = [x for x in children if x.to_address == recipient and x.from_address == pool]
            if not ins or len(outs) != 1:
                continue
            swaps.append(
                NSwap(
                    tx,
                    t.transaction_position or 0,
                    ta,
                    pool,
                    ins[-1].from_address,
                    outs[0].to_address,
                    ins[-1].token,
                    ins[-1].amount,
                    outs[0].token,
                    outs[0].amount,
                    t.error,
                )
            )
    return swaps


def _within(a: int, b: int) -> bool:
    return a + b == 0 or 200 * abs(a - b) < a + b


def _links(a: NSwap, b: NSwap) -> bool:
    return (
        a.token_out == b.token_in
        and (a.pool == b.from_address or a.to_address in (b.pool, b.from_address))
        and _within(a.amount_out, b.amount_in)
    )


def _route(start: NSwap, ends: list[NSwap], swaps: list[NSwap]) -> list[NSwap] | None:
    for end in ends:
        if _links(start, end):
            return [start, end]
    best: list[NSwap] | None = None
    others = [s for s in swaps if s is not start and s not in ends]
    for nxt in others:
        if _links(start, nxt):
            rest = _route(nxt, ends, [s for s in others if s is not nxt])
            if rest is not None and (best is None or len(rest) < len(best)):
                best = rest
    return None if best is None else [start, *best]


def naive_arbitrages(swaps: list[NSwap]) -> list[dict[str, Any]]:
    """The reference rule: only the first and last pools must differ; profit = end - start."""
    out: list[dict[str, Any]] = []
    for tx in sorted({s.tx for s in swaps}):
        txs = [s for s in swaps if s.tx == tx]
        pools = {s.pool for s in txs}
        found: list[dict[str, Any]] = []
        used: list[NSwap] = []
        for start in txs:
            if start in used or start.from_address in pools:
                continue
            ends = [
                e
                for e in txs
                if e is not start
                and e not in used
                and e.token_out == start.token_in
                and e.pool != start.pool
                and e.to_address == start.from_address
            ]
            route = _route(start, ends, txs) if ends else None
            if route is not None:
                used.extend(route)
                found.append(
                    {
                        "tx": tx,
                        "swaps": route,
                        "token": start.token_in,
                        "profit": route[-1].amount_out - start.amount_in,
                    }
                )
        if len(found) > 1:
            found = [a for a in found if a["swaps"][0].trace_address < a["swaps"][-1].trace_address]
        out.extend(found)
    return out


def naive_sandwiches(swaps: list[NSwap]) -> list[dict[str, Any]]:
    """The reference rule: profit = backrun out - frontrun in, whatever the backrun's size."""
    ordered = sorted(swaps, key=lambda s: (s.position, s.trace_address))
    out: list[dict[str, Any]] = []
    for i, front in enumerate(ordered):
        who = front.to_address
        if who in ROUTERS:
            continue
        victims: list[NSwap] = []
        for other in ordered[i + 1 :]:
            if other.tx == front.tx or other.pool != front.pool:
                continue
            if (
                other.token_in == front.token_in
                and other.token_out == front.token_out
                and other.from_address != who
            ):
                victims.append(other)
            elif (
                other.token_in == front.token_out
                and other.token_out == front.token_in
                and other.from_address == who
            ):
                if victims:
                    out.append(
                        {
                            "front": front,
                            "back": other,
                            "victims": victims,
                            "profit": other.amount_out - front.amount_in,
                        }
                    )
                break
    return out


def naive_liquidations(calls: list[DecodedCall]) -> list[dict[str, Any]]:
    """The reference rule: a liquidation call counts unless that very call reports an error."""
    out: list[dict[str, Any]] = []
    for tx, tx_calls in by_transaction(calls).items():
        for c in tx_calls:
            t = c.trace
            if not _is_call(c) or t.error is not None or c.inputs is None:
                continue
            if c.function_name == "liquidationCall" and t.to_address in AAVE_POOLS:
                out.append({"tx": tx, "trace_address": t.trace_address, "user": c.inputs["user"]})
            elif c.function_name == "liquidateBorrow":
                seized = any(
                    _is_child(o.trace.trace_address, t.trace_address) and o.function_name == "seize"
                    for o in tx_calls
                )
                if seized:
                    out.append({"tx": tx, "trace_address": t.trace_address, "user": c.inputs["borrower"]})
    return out


def naive_inspect(raw: dict[str, Any]) -> NaiveResult:
    calls = classify(raw["traces"])
    swaps = naive_swaps(calls)
    return NaiveResult(swaps, naive_arbitrages(swaps), naive_sandwiches(swaps), naive_liquidations(calls))


def differences(ours: Any, naive: NaiveResult, calls: list[DecodedCall]) -> tuple[list[str], list[str]]:
    """Where both classify, the same results: every Uniswap V2/V3 swap (transaction, trace,
    tokens, amounts) and every liquidation (transaction, trace, user); the inspector's other swaps
    are protocols the port does not classify. Returns (unexplained, explained) differences; two
    rules explain one: the reference leaves a call whose calldata does not decode unclassified
    (a transfer with dirty address padding some bots send: the swap it pays is then not found), and it charges a swap with a transfer made inside another
    transfer (a fee-on-transfer token's tax sale), a fault the inspector fixes."""
    mine = {
        (s.transaction_hash, tuple(s.trace_address)): (
            s.token_in_address,
            s.token_in_amount,
            s.token_out_address,
            s.token_out_amount,
        )
        for s in ours.swaps
        if s.protocol in ("uniswap_v2", "uniswap_v3")
    }
    theirs = {
        (s.tx, tuple(s.trace_address)): (s.token_in, s.amount_in, s.token_out, s.amount_out)
        for s in naive.swaps
    }
    undecodable = {c.trace.transaction_hash for c in calls if c.undecodable}
    unexplained: list[str] = []
    explained: list[str] = []
    for key in sorted(mine.keys() | theirs.keys()):
        got, want = mine.get(key), theirs.get(key)
        if got == want:
            continue
        line = f"swap {key}: inspector {got}, reference port {want}"
        if want is None and key[0] in undecodable:
            explained.append(f"{line} (its transaction has calldata the reference cannot decode)")
        elif got is not None and want is not None and (got[0], got[2], got[3]) == (want[0], want[2], want[3]):
            explained.append(f"{line} (token in charged from a transfer inside a transfer)")
        else:
            unexplained.append(line)
    mine_l = {(li.transaction_hash, tuple(li.trace_address), li.liquidated_user) for li in ours.liquidations}
    theirs_l = {(li["tx"], tuple(li["trace_address"]), li["user"]) for li in naive.liquidations}
    unexplained += [f"liquidation only in the inspector: {k}" for k in sorted(mine_l - theirs_l)]
    unexplained += [f"liquidation only in the reference port: {k}" for k in sorted(theirs_l - mine_l)]
    return unexplained, explained


def fixtures_dir() -> Path:
    env = os.environ.get("MEVAAS_FIXTURES_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "mainnet-blocks"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="passes over the fixture blocks")
    args = parser.parse_args()
    directory = fixtures_dir()
    files = sorted(p for p in directory.glob("[0-9]*.json") if "expected" not in p.name)
    if not files:
        print(f"no fixture blocks in {directory}; set MEVAAS_FIXTURES_DIR", file=sys.stderr)
        return 1
    unequal = 0
    for path in files:
        ours = inspect_block(orjson.loads(path.read_bytes()))
        raw = json.loads(path.read_bytes())
        naive = naive_inspect(raw)
        unexplained, explained = differences(ours, naive, classify(raw["traces"]))
        unequal += len(unexplained)
        print(
            f"{path.stem}: swaps {len(ours.swaps)}/{len(naive.swaps)}  arbs {len(ours.arbitrages)}/"
            f"{len(naive.arbitrages)}  sandwiches {len(ours.sandwiches)}/{len(naive.sandwiches)}  "
            f"liquidations {len(ours.liquidations)}/{len(naive.liquidations)}  (ours/reference port)"
        )
        for line in explained:
            print(f"  differs, explained: {line}")
        for line in unexplained:
            print(f"  NOT EQUAL: {line}")
    if unequal:
        print(f"{unequal} unexplained differences where both classify: not timed", file=sys.stderr)
        return 1

    rounds: int = args.rounds

    def run(fn: Callable[[Path], object]) -> float:
        start = time.perf_counter()
        for _ in range(rounds):
            for path in files:
                fn(path)
        return rounds * len(files) / (time.perf_counter() - start)

    ours_bps = run(lambda p: inspect_block(orjson.loads(p.read_bytes())))
    naive_bps = run(lambda p: naive_inspect(json.loads(p.read_bytes())))
    print(f"inspector: {ours_bps:8.1f} blocks/s")
    print(f"naive:     {naive_bps:8.1f} blocks/s")
    print(f"ratio:     {ours_bps / naive_bps:8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
