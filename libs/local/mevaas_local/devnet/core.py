"""The local devnet: one or two anvil chains, each seeded with tokens, WETH9, Uniswap V2
deployments and pools, an Executor, a block producer + bundle relay, and a market simulator.
It writes the chain registry (``chains.json``) and demo wallets (``wallets.json``) it deployed.
With ``keep_state`` each chain's state is saved under ``<data_dir>/state`` (periodically and on
stop) and loaded on the next start (devnet/persist.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from eth_account import Account

from mevaas_chain.client import ChainClient
from mevaas_chain.registry import ChainConfig, ChainRegistry
from mevaas_local.devnet import persist
from mevaas_local.devnet.anvil import Anvil
from mevaas_local.devnet.deploy import Deployment, Receipt, Tx, deploy_chain, deploy_executor, mint_tokens
from mevaas_local.devnet.lending_sim import Lending, resume_lending, start_lending
from mevaas_local.devnet.relay import BlockProducer, BlockResult, RelayServer
from mevaas_local.devnet.simulator import MarketSimulator
from mevaas_local.devnet.spec import MAIN_CHAIN, SECOND_CHAIN, ChainSpec

log = logging.getLogger(__name__)

# anvil's well-known development mnemonic; its keys are public and only ever hold devnet funds.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
DEPLOYER_INDEX = 0
SIM_INDEX = 9


@dataclass(frozen=True)
class DevAccount:
    address: str
    private_key: str


def dev_accounts(count: int = 10) -> list[DevAccount]:
    Account.enable_unaudited_hdwallet_features()
    accounts = []
    for i in range(count):
        acct = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        accounts.append(DevAccount(acct.address, "0x" + bytes(acct.key).hex()))
    return accounts


class DevnetChain:
    """One anvil with its deployment, block producer, relay and simulator."""

    def __init__(
        self,
        spec: ChainSpec,
        accounts: Sequence[DevAccount],
        *,
        executor_owner: str | None = None,
        sim_swaps_per_block: int = 3,
        state_path: Path | None = None,
    ) -> None:
        self.spec = spec
        self.state_path = state_path
        self.restore = persist.Restore(None)
        self.accounts = list(accounts)
        self.deployer = self.accounts[DEPLOYER_INDEX].address
        self.sim_wallet = self.accounts[SIM_INDEX].address
        self.demo_wallets = [a.address for a in self.accounts[1 : 1 + spec.demo_accounts]]
        self.executor_owner = executor_owner or self.demo_wallets[0]
        self.anvil = Anvil(chain_id=spec.chain_id)
        self.sim_swaps_per_block = sim_swaps_per_block
        self._client: ChainClient | None = None
        self._producer: BlockProducer | None = None
        self._relay: RelayServer | None = None
        # Further relays (add_relay), feeding the same block producer.
        self.extra_relays: list[RelayServer] = []
        self._deployment: Deployment | None = None
        self._simulator: MarketSimulator | None = None
        self._config: ChainConfig | None = None
        self.lending: Lending | None = None

    @property
    def client(self) -> ChainClient:
        """Talks to anvil directly (cheat codes, reads)."""
        assert self._client is not None, "chain not started"
        return self._client

    @property
    def producer(self) -> BlockProducer:
        assert self._producer is not None, "chain not started"
        return self._producer

    @property
    def relay(self) -> RelayServer:
        assert self._relay is not None, "chain not started"
        return self._relay

    @property
    def deployment(self) -> Deployment:
        assert self._deployment is not None, "chain not started"
        return self._deployment

    @property
    def simulator(self) -> MarketSimulator:
        assert self._simulator is not None, "chain not started"
        return self._simulator

    @property
    def config(self) -> ChainConfig:
        assert self._config is not None, "chain not started"
        return self._config

    async def start(self) -> None:
        restore = persist.load(self.state_path, self.spec) if self.state_path else persist.Restore(None)
        await self._start_node()
        if restore.saved is not None:
            try:
                await self._load(restore.saved)
            except Exception as exc:
                log.warning("devnet chain %d: saved state not loaded (%s)", self.spec.chain_id, exc)
                restore = persist.Restore(None, f"its saved state could not be loaded: {exc}")
                await self.stop()
                await self._start_node()
        if restore.saved is None:
            await self._deploy()
        self.restore = restore
        self._attach_simulator()

    async def _start_node(self) -> None:
        await self.anvil.start()
        self._client = ChainClient(self.anvil.http_url, timeout_s=30.0)
        self._producer = BlockProducer(self._client)
        self._relay = RelayServer(self._producer, self._client)
        await self._relay.start()

    async def add_relay(self, *, refuse_bundles: str = "") -> RelayServer:
        """Another relay of this chain (its own port, the same block producer: as two relays
        feed builders of one chain), refusing every bundle with ``refuse_bundles`` if set; a
        chain's fast_relays point at such relays. Stopped with the chain."""
        relay = RelayServer(self.producer, self.client, refuse_bundles=refuse_bundles)
        await relay.start()
        self.extra_relays.append(relay)
        return relay

    async def _load(self, saved: persist.SavedChain) -> None:
        """Give anvil its saved state back and check it holds what the devnet deployed there."""
        await self.client.request("anvil_loadState", [saved.anvil_state])
        head = await self.client.block_number()
        if head < saved.head_block:
            raise RuntimeError(f"head block {head} is behind the saved {saved.head_block}")
        executor = saved.deployment.contracts["executor"]
        if await self.client.request("eth_getCode", [executor, "latest"]) in ("0x", "0x0", None):
            raise RuntimeError(f"no code at the saved executor {executor}")
        self._deployment = saved.deployment
        if self.spec.aave_borrowers is not None and saved.market is not None:
            self.lending = resume_lending(
                self.client,
                self.producer,
                saved.deployment,
                saved.market,
                oracle_wallet=self.sim_wallet,
                borrowers=self.spec.aave_borrowers,
                seed=self.spec.seed,
            )

    async def save_state(self) -> None:
        """Write the chain's state file (no-op without ``state_path``)."""
        if self.state_path is None or self._deployment is None:
            return
        state = await self.client.request("anvil_dumpState", [])
        head = await self.client.block_number()
        saved = persist.SavedChain(
            anvil_state=str(state),
            deployment=self._deployment,
            market=self.lending.market if self.lending is not None else None,
            head_block=head,
            saved_at=datetime.now(UTC),
        )
        await asyncio.to_thread(persist.save, self.state_path, self.spec, saved)

    async def _deploy(self) -> None:
        deployment = await deploy_chain(
            self.client,
            self.transact,
            self.spec,
            deployer=self.deployer,
            sim_wallet=self.sim_wallet,
            demo_wallets=self.demo_wallets,
        )
        executor = await deploy_executor(
            self.client,
            self.transact,
            owner=self.executor_owner,
            factories=[d.factory for d in deployment.dexes],
            sender=self.deployer,
        )
        deployment.contracts["executor"] = executor
        self._deployment = deployment
        # Own-capital mode needs inventory in the executor.
        await mint_tokens(
            self.client,
            self.transact,
            deployment,
            deployer=self.deployer,
            to=executor,
            amounts={
                t.symbol: 100_000 * 10**t.decimals // max(1, _usd_unit(self.spec, t.symbol))
                for t in deployment.tokens
            },
        )
        if self.spec.aave_borrowers is not None:
            self.lending = await start_lending(
                self.client,
                self.transact,
                self.producer,
                deployment,
                prices_usd=spec_prices(self.spec),
                deployer=self.deployer,
                oracle_wallet=self.sim_wallet,
                borrowers=self.spec.aave_borrowers,
                seed=self.spec.seed,
            )
            deployment.contracts.update(self.lending.market.contracts())

    def _attach_simulator(self) -> None:
        deployment = self.deployment
        self._simulator = MarketSimulator(
            self.client,
            self.producer,
            wallet=self.sim_wallet,
            dexes=deployment.dexes,
            pools=deployment.pools,
            swaps_per_block=self.sim_swaps_per_block,
            seed=self.spec.seed,
        )
        self._simulator.attach()
        self._config = ChainConfig(
            chain_id=self.spec.chain_id,
            name=self.spec.name,
            rpc_url=self.relay.url,
            ws_url=self.anvil.ws_url,
            relay_url=self.relay.url + "/relay",
            wrapped_native=deployment.weth,
            dexes=deployment.dexes,
            tokens=deployment.tokens,
            contracts=deployment.contracts,
        )

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._relay is not None:
            await self._relay.stop()
        for relay in self.extra_relays:
            await relay.stop()
        self.extra_relays.clear()
        if self._client is not None:
            await self._client.close()
        await self.anvil.stop()

    def start_blocks(self, block_time_s: float) -> None:
        self.producer.start(block_time_s)
        self._config = self.config.model_copy(update={"block_time_s": block_time_s})

    async def transact(self, txs: Sequence[Tx]) -> list[Receipt]:
        return await self.producer.transact(txs)

    async def mine(self, blocks: int = 1) -> list[BlockResult]:
        return [await self.producer.mine_block() for _ in range(blocks)]


def spec_prices(spec: ChainSpec) -> dict[str, Decimal]:
    """USD price of every token of the chain as the deployment seeded it."""
    prices = {t.symbol: Decimal(str(t.usd_price)) for t in spec.tokens}
    prices["WETH"] = Decimal(str(spec.weth_usd_price))
    return prices


def _usd_unit(spec: ChainSpec, symbol: str) -> int:
    """Whole-USD price used to size grants (WETH uses the chain's ETH price)."""
    if symbol == "WETH":
        return int(spec.weth_usd_price)
    return max(1, int(next(t.usd_price for t in spec.tokens if t.symbol == symbol)))


class Devnet:
    """``async with Devnet(...) as devnet``; ``block_time_s=None`` mines only on ``mine()``."""

    def __init__(
        self,
        *,
        block_time_s: float | None = 1.0,
        second_chain: bool = False,
        data_dir: Path | None = Path(".data/devnet"),
        executor_owner: str | None = None,
        sim_swaps_per_block: int = 3,
        chain_id: int | None = None,
        keep_state: bool = False,
        save_interval_s: float = 10.0,
    ) -> None:
        self.block_time_s = block_time_s
        self.data_dir = data_dir
        self.save_interval_s = save_interval_s
        self.accounts = dev_accounts()
        main = MAIN_CHAIN if chain_id is None else _with_chain_id(MAIN_CHAIN, chain_id)
        specs = [main, SECOND_CHAIN] if second_chain else [main]
        state_dir = data_dir / "state" if keep_state and data_dir is not None else None
        self.chains = [
            DevnetChain(
                s,
                self.accounts,
                executor_owner=executor_owner,
                sim_swaps_per_block=sim_swaps_per_block,
                state_path=persist.state_file(state_dir, s.chain_id) if state_dir else None,
            )
            for s in specs
        ]
        self._saver: asyncio.Task[None] | None = None

    @property
    def main(self) -> DevnetChain:
        return self.chains[0]

    @property
    def registry(self) -> ChainRegistry:
        return ChainRegistry(chains=[c.config for c in self.chains])

    async def __aenter__(self) -> Devnet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            await asyncio.gather(*(c.start() for c in self.chains))
            if self.block_time_s is not None:
                for chain in self.chains:
                    chain.start_blocks(self.block_time_s)
        except BaseException:
            await self.stop()
            raise
        if self.data_dir is not None:
            self.write_files(self.data_dir)
        if any(c.state_path for c in self.chains):
            self._saver = asyncio.create_task(self._save_periodically(), name="devnet-state-saver")

    async def stop(self) -> None:
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
            self._saver = None
            # The last word: what the chains hold as the fleet stops.
            await self.save_state()
        await asyncio.gather(*(c.stop() for c in self.chains), return_exceptions=True)

    async def save_state(self) -> None:
        results = await asyncio.gather(*(c.save_state() for c in self.chains), return_exceptions=True)
        for chain, result in zip(self.chains, results, strict=True):
            if isinstance(result, Exception):
                log.warning("devnet chain %d: state not saved (%s)", chain.spec.chain_id, result)

    async def _save_periodically(self) -> None:
        # A crash loses at most one interval of chain state (what came later is then a reorg).
        while True:
            await asyncio.sleep(self.save_interval_s)
            await self.save_state()

    def restore_summary(self) -> list[str]:
        """One line per chain: kept (from when, which block) or new, and why it was reset."""
        lines = []
        for chain in self.chains:
            restore, chain_id = chain.restore, chain.spec.chain_id
            if restore.saved is not None:
                lines.append(
                    f"chain {chain_id}: state kept from {restore.saved.saved_at:%Y-%m-%d %H:%M:%S} UTC "
                    f"(block {restore.saved.head_block})"
                )
            elif restore.was_reset:
                lines.append(
                    f"chain {chain_id}: DEVNET RESET - a new chain was deployed because {restore.reset_reason}; "
                    "executor contracts are redeployed and earlier balances are gone"
                )
            else:
                lines.append(f"chain {chain_id}: new chain (no saved state)")
        return lines

    def write_files(self, data_dir: Path) -> None:
        self.registry.write(data_dir / "chains.json")
        wallets = {
            "note": "anvil development keys: public, devnet only",
            "deployer": self.main.deployer,
            "simulator": self.main.sim_wallet,
            "executor_owner": self.main.executor_owner,
            "demo": [
                {"address": a.address, "private_key": a.private_key}
                for a in self.accounts
                if a.address in self.main.demo_wallets
            ],
        }
        (data_dir / "wallets.json").write_text(json.dumps(wallets, indent=2) + "\n")


def _with_chain_id(spec: ChainSpec, chain_id: int) -> ChainSpec:
    from dataclasses import replace

    return replace(spec, chain_id=chain_id)
