"""Inspector throughput over the mainnet fixture blocks, JSON parsing included, against a naive
baseline in the same run.

The baseline follows the reference inspector's rules literally and in its style: stdlib JSON into
dicts, calldata decoded with eth_abi as the reference does, and for every candidate call a
re-scan of the whole block's trace list to find the transfers before it and inside it (no index
by transaction or trace-address prefix). It covers only Uniswap V2/V3 swaps and Aave/Compound
liquidations, so it does less work per block than the inspector. It is also the executable
statement of the reference's known faults that the unit tests check against.

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


def _args(types: list[str], data: str) -> tuple[Any, ...] | None:
    # Like the reference: calldata that does not decode cleanly is left unclassified.
    try:
        return decode(types, bytes.fromhex(data[10:]))
    except (DecodingError, ValueError):
        return None


def _addr(data: str, i: int) -> str:
    args = _args(["address"] * (i + 1), data[: 10 + 64 * (i + 1)])
    return "" if args is None else str(args[i]).lower()


def _is_call(t: dict[str, Any]) -> bool:
    return bool(t["type"] == "call" and t["action"].get("callType", "call") == "call")


def _transfer(t: dict[str, Any]) -> NTransfer | None:
    if not _is_call(t) or t.get("transaction_hash") is None:
        return None
    a = t["action"]
    data = a["input"].lower()
    value = int(a["value"], 16)
    tx, ta = t["transaction_hash"], t["trace_address"]
    if data == "0x" and value > 0:
        return NTransfer(tx, ta, ETH, a["from"].lower(), a["to"].lower(), value)
    if data.startswith("0xa9059cbb") and len(data) >= 138:
        args = _args(["address", "uint256"], data[:138])
        if args is None:
            return None
        return NTransfer(tx, ta, a["to"].lower(), a["from"].lower(), args[0].lower(), args[1])
    if data.startswith("0x23b872dd") and len(data) >= 202:
        args = _args(["address", "address", "uint256"], data[:202])
        if args is None:
            return None
        return NTransfer(tx, ta, a["to"].lower(), args[0].lower(), args[1].lower(), args[2])
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


def naive_swaps(traces: list[dict[str, Any]]) -> list[NSwap]:
    swaps: list[NSwap] = []
    for t in traces:
        if not _is_call(t) or t.get("transaction_hash") is None:
            continue
        data = t["action"]["input"].lower()
        if data.startswith("0x022c0d9f"):
            recipient = _addr(data, 2)
        elif data.startswith("0x128acb08"):
            recipient = _addr(data, 0)
        else:
            continue
        tx, ta = t["transaction_hash"], t["trace_address"]
        pool = t["action"]["to"].lower()
        # Whole-block scans per candidate: the naive part.
        prior = _drop_nested(
            [
                tr
                for o in traces
                if o.get("transaction_hash") == tx and o["trace_address"] < ta
                for tr in [_transfer(o)]
                if tr is not None
            ]
        )
        children = _drop_nested(
            [
                tr
                for o in traces
                if o.get("transaction_hash") == tx and _is_child(o["trace_address"], ta)
                for tr in [_transfer(o)]
                if tr is not None
            ]
        )
        value = int(t["action"]["value"], 16)
        if value > 0:
            ins = [NTransfer(tx, ta, ETH, t["action"]["from"].lower(), pool, value)]
        else:
            ins = [x for x in prior if x.to_address == pool] or [x for x in children if x.to_address == pool]
        outs = [x for x in children if x.to_address == recipient and x.from_address == pool]
        if not ins or len(outs) != 1:
            continue
        swaps.append(
            NSwap(
                tx,
                t["transaction_position"],
                ta,
                pool,
                ins[-1].from_address,
                outs[0].to_address,
                ins[-1].token,
                ins[-1].amount,
                outs[0].token,
                outs[0].amount,
                t.get("error"),
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


def naive_liquidations(traces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reference rule: a liquidation call counts unless that very call reports an error."""
    out: list[dict[str, Any]] = []
    for t in traces:
        if not _is_call(t) or t.get("error") is not None:
            continue
        data = t["action"]["input"].lower()
        to = t["action"]["to"].lower()
        if data.startswith("0x00a718a9") and to in AAVE_POOLS:
            out.append(
                {"tx": t["transaction_hash"], "trace_address": t["trace_address"], "user": _addr(data, 2)}
            )
        elif data.startswith(("0xaae40a2a", "0xf5e3c462")):
            tx, ta = t["transaction_hash"], t["trace_address"]
            seized = any(
                o.get("transaction_hash") == tx
                and _is_child(o["trace_address"], ta)
                and o["action"].get("input", "").startswith("0xb2a02ff1")
                for o in traces
            )
            if seized:
                out.append({"tx": tx, "trace_address": ta, "user": _addr(data, 0)})
    return out


def naive_inspect(raw: dict[str, Any]) -> NaiveResult:
    traces = raw["traces"]
    swaps = naive_swaps(traces)
    return NaiveResult(swaps, naive_arbitrages(swaps), naive_sandwiches(swaps), naive_liquidations(traces))


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
    for path in files:
        ours = inspect_block(orjson.loads(path.read_bytes()))
        naive = naive_inspect(json.loads(path.read_bytes()))
        print(
            f"{path.stem}: swaps {len(ours.swaps)}/{len(naive.swaps)}  arbs {len(ours.arbitrages)}/"
            f"{len(naive.arbitrages)}  sandwiches {len(ours.sandwiches)}/{len(naive.sandwiches)}  "
            f"liquidations {len(ours.liquidations)}/{len(naive.liquidations)}  (ours/naive)"
        )

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
