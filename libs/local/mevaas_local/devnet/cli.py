"""``mevaas devnet``: run the local devnet until Ctrl-C; ``mevaas devnet status``: chains, heights,
pools and current cross-DEX price gaps of the chains in the registry."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mevaas_chain.client import ChainClient
from mevaas_chain.pool_index import Pool, PoolIndex
from mevaas_chain.registry import ChainConfig, load_registry
from mevaas_local.devnet.core import Devnet

app = typer.Typer(help="Local anvil devnet with Uniswap V2 DEXes, a market simulator and a bundle relay.")
console = Console()

DEFAULT_DATA_DIR = Path(".data/devnet")


@app.callback(invoke_without_command=True)
def devnet(
    ctx: typer.Context,
    block_time: Annotated[float, typer.Option(help="Seconds between blocks.")] = 1.0,
    second_chain: Annotated[
        bool, typer.Option(help="Also start a second chain for cross-chain work.")
    ] = True,
    swaps_per_block: Annotated[int, typer.Option(help="Random market swaps per block.")] = 3,
    uniswap_v3: Annotated[
        bool, typer.Option(help="Deploy Uniswap V3 pools on the main chain (the simulator trades them).")
    ] = True,
    data_dir: Annotated[
        Path, typer.Option(help="Where chains.json and wallets.json are written.")
    ] = DEFAULT_DATA_DIR,
) -> None:
    """Run the devnet until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    asyncio.run(_run(block_time, second_chain, swaps_per_block, data_dir, uniswap_v3))


async def _run(
    block_time: float, second_chain: bool, swaps_per_block: int, data_dir: Path, uniswap_v3: bool
) -> None:
    net = Devnet(
        block_time_s=block_time,
        second_chain=second_chain,
        data_dir=data_dir,
        sim_swaps_per_block=swaps_per_block,
        uniswap_v3=uniswap_v3,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with net:
        for chain in net.chains:
            cfg = chain.config
            console.print(f"[bold]{cfg.name}[/bold] chain id {cfg.chain_id}")
            console.print(f"  rpc (via relay) {cfg.rpc_url}   ws {cfg.ws_url}   bundles {cfg.relay_url}")
            console.print(
                f"  dexes {', '.join([d.name for d in cfg.dexes] + [d.name for d in cfg.v3_dexes])}; "
                f"{len(chain.deployment.pools)} V2 pools, {len(chain.simulator.v3_pools)} V3 pools"
            )
            console.print(f"  executor {cfg.contracts.get('executor')} (owner {chain.executor_owner})")
        console.print(f"registry {data_dir / 'chains.json'}; demo wallets {data_dir / 'wallets.json'}")
        console.print("devnet running; Ctrl-C to stop")
        await stop.wait()
    console.print("devnet stopped")


@dataclass(frozen=True)
class Gap:
    pair: str
    prices: dict[str, float]
    gap_bps: float


def price_gaps(chain: ChainConfig, pools: dict[str, Pool]) -> list[Gap]:
    """Mid price of each token pair on each DEX, and the spread between the extremes in bps."""
    decimals = {t.address: t.decimals for t in chain.tokens}
    symbols = {t.address: t.symbol for t in chain.tokens}
    by_pair: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for pool in pools.values():
        if (
            pool.reserve0 == 0
            or pool.reserve1 == 0
            or pool.token0 not in decimals
            or pool.token1 not in decimals
        ):
            continue
        # Display only: quote token1 per token0 in whole units.
        price = (pool.reserve1 / 10 ** decimals[pool.token1]) / (pool.reserve0 / 10 ** decimals[pool.token0])
        by_pair[(pool.token0, pool.token1)][pool.dex] = price
    gaps = []
    for (t0, t1), prices in by_pair.items():
        if len(prices) < 2:
            continue
        lo, hi = min(prices.values()), max(prices.values())
        gaps.append(Gap(f"{symbols[t0]}/{symbols[t1]}", prices, (hi / lo - 1) * 10_000))
    return sorted(gaps, key=lambda g: -g.gap_bps)


@app.command()
def status(
    chains_file: Annotated[
        Path | None, typer.Option(help="Registry file (default: MEVAAS_CHAINS[_FILE] or the devnet's).")
    ] = None,
) -> None:
    """Chains, block heights, pools and current cross-DEX price gaps."""
    registry = load_registry(chains_file)
    if not registry.chains:
        console.print("no chains configured; start one with `mevaas devnet`")
        raise typer.Exit(1)
    asyncio.run(_status(list(registry.chains)))


async def _status(chains: list[ChainConfig]) -> None:
    for chain in chains:
        async with ChainClient.for_chain(chain, timeout_s=5.0, retries=1) as client:
            try:
                height = await client.block_number()
                index = PoolIndex(client, chain.dexes)
                await index.load()
            except Exception as exc:
                console.print(
                    f"[bold]{chain.name}[/bold] ({chain.chain_id}) unreachable at {chain.rpc_url}: {exc}"
                )
                continue
        console.print(
            f"[bold]{chain.name}[/bold] chain id {chain.chain_id}  block {height}  "
            f"{len(index.pools)} pools on {', '.join(d.name for d in chain.dexes)}  rpc {chain.rpc_url}"
        )
        gaps = price_gaps(chain, index.snapshot())
        if not gaps:
            continue
        dex_names = [d.name for d in chain.dexes]
        table = Table("pair", *dex_names, "gap (bps)")
        for gap in gaps:
            table.add_row(
                gap.pair,
                *(f"{gap.prices[d]:.6g}" if d in gap.prices else "-" for d in dex_names),
                f"{gap.gap_bps:.1f}",
            )
        console.print(table)


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        app()


if __name__ == "__main__":
    main()
