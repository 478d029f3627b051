"""Deploys a chain's contracts from the real npm artifacts (WETH9, Uniswap V2 factory, pair and
Router02) plus the repo's MockToken and Executor, seeds pools, and funds wallets.

Everything is sent as unsigned transactions from anvil's unlocked (or impersonated) accounts with
explicit nonces and gas, then mined together, so a full deployment costs a handful of blocks.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from mevaas_chain import abi
from mevaas_chain.client import Call, ChainClient
from mevaas_chain.contracts import load_artifact, load_npm_artifact
from mevaas_chain.registry import DexConfig, TokenConfig
from mevaas_local.devnet.spec import ChainSpec

Tx = dict[str, Any]
Receipt = dict[str, Any]
Transact = Callable[[Sequence[Tx]], Awaitable[list[Receipt]]]

ETHER = 10**18
MAX_UINT = 2**256 - 1
FUNDED_BALANCE = 10**9 * ETHER
NO_DEADLINE = 2**63


class DeploymentError(RuntimeError):
    pass


@dataclass(frozen=True)
class PoolInfo:
    dex: str
    address: str
    token0: str
    token1: str


@dataclass
class Deployment:
    weth: str
    tokens: list[TokenConfig]
    dexes: list[DexConfig]
    pools: list[PoolInfo]
    contracts: dict[str, str] = field(default_factory=dict)

    def token(self, symbol: str) -> TokenConfig:
        return next(t for t in self.tokens if t.symbol == symbol)


def init_code_hash() -> str:
    return "0x" + keccak(load_npm_artifact("@uniswap/v2-core", "UniswapV2Pair").bytecode).hex()


def deploy_data(bytecode: bytes, types: Sequence[str] = (), args: Sequence[Any] = ()) -> str:
    return "0x" + (bytecode + (encode(list(types), list(args)) if types else b"")).hex()


class Batch:
    """Unsigned transactions with locally tracked nonces, sent and mined together by ``transact``."""

    def __init__(self, client: ChainClient) -> None:
        self.client = client
        self.txs: list[Tx] = []
        self._nonces: dict[str, int] = {}

    async def _nonce(self, sender: str) -> int:
        if sender not in self._nonces:
            self._nonces[sender] = int(
                await self.client.request("eth_getTransactionCount", [sender, "pending"]), 16
            )
        nonce = self._nonces[sender]
        self._nonces[sender] = nonce + 1
        return nonce

    async def deploy(self, sender: str, data: str, gas: int = 6_000_000) -> str:
        nonce = await self._nonce(sender)
        self.txs.append({"from": sender, "data": data, "gas": hex(gas), "nonce": hex(nonce)})
        return abi.create_address(sender, nonce)

    async def call(self, sender: str, to: str, data: bytes, *, value: int = 0, gas: int = 300_000) -> None:
        nonce = await self._nonce(sender)
        self.txs.append(
            {
                "from": sender,
                "to": to,
                "data": "0x" + data.hex(),
                "value": hex(value),
                "gas": hex(gas),
                "nonce": hex(nonce),
            }
        )

    async def flush(self, transact: Transact) -> list[Receipt]:
        txs, self.txs = self.txs, []
        receipts = await transact(txs)
        failed = [r["transactionHash"] for r in receipts if int(r["status"], 16) != 1]
        if failed:
            raise DeploymentError(f"{len(failed)} deployment transactions reverted, first {failed[0]}")
        return receipts


async def fund(client: ChainClient, accounts: Sequence[str], wei: int = FUNDED_BALANCE) -> None:
    await client.batch([("anvil_setBalance", [a, hex(wei)]) for a in accounts])


def _amount(usd: float, price: float, decimals: int) -> int:
    return int(usd / price * 10**decimals)


async def deploy_chain(
    client: ChainClient,
    transact: Transact,
    spec: ChainSpec,
    *,
    deployer: str,
    sim_wallet: str,
    demo_wallets: Sequence[str],
) -> Deployment:
    """Deploy tokens, WETH9, one Uniswap V2 factory + Router02 per DEX and the seeded pools."""
    rng = random.Random(spec.seed)
    await fund(client, [deployer, sim_wallet, *demo_wallets])
    batch = Batch(client)
    weth9 = load_npm_artifact("@uniswap/v2-periphery", "WETH9")
    factory_art = load_npm_artifact("@uniswap/v2-core", "UniswapV2Factory")
    router_art = load_npm_artifact("@uniswap/v2-periphery", "UniswapV2Router02")
    token_art = load_artifact("MockToken")
    code_hash = init_code_hash()

    weth = await batch.deploy(deployer, deploy_data(weth9.bytecode), gas=1_500_000)
    prices: dict[str, float] = {"WETH": spec.weth_usd_price}
    decimals: dict[str, int] = {"WETH": 18}
    addresses: dict[str, str] = {"WETH": weth}
    tokens = [TokenConfig(address=weth, symbol="WETH", decimals=18)]
    for t in spec.tokens:
        address = await batch.deploy(
            deployer,
            deploy_data(token_art.bytecode, ["string", "string", "uint8"], [t.name, t.symbol, t.decimals]),
        )
        addresses[t.symbol], prices[t.symbol], decimals[t.symbol] = address, t.usd_price, t.decimals
        tokens.append(TokenConfig(address=address, symbol=t.symbol, decimals=t.decimals))
    dexes: list[DexConfig] = []
    for dex in spec.dexes:
        factory = await batch.deploy(
            deployer, deploy_data(factory_art.bytecode, ["address"], [deployer]), gas=6_000_000
        )
        router = await batch.deploy(
            deployer, deploy_data(router_art.bytecode, ["address", "address"], [factory, weth]), gas=8_000_000
        )
        dexes.append(
            DexConfig(name=dex.name, factory=factory, router=router, fee_bps=30, init_code_hash=code_hash)
        )
    await batch.flush(transact)

    # Pools: create, pay both sides straight into the pair, mint LP to the deployer.
    pools: list[PoolInfo] = []
    weth_needed = 0
    seeds: list[tuple[str, str, int, str, int]] = []
    for dex, dex_cfg in zip(spec.dexes, dexes, strict=True):
        for pool in dex.pools:
            skew = 1.0 + rng.uniform(-dex.price_skew, dex.price_skew)
            half = pool.usd_liquidity / 2
            amount_a = _amount(half * skew, prices[pool.token_a], decimals[pool.token_a])
            amount_b = _amount(half, prices[pool.token_b], decimals[pool.token_b])
            a, b = addresses[pool.token_a], addresses[pool.token_b]
            pair = abi.pair_address(dex_cfg.factory, code_hash, a, b)
            t0, t1 = abi.sort_tokens(a, b)
            pools.append(PoolInfo(dex=dex.name, address=pair, token0=t0, token1=t1))
            await batch.call(
                deployer, dex_cfg.factory, abi.encode_call("createPair(address,address)", a, b), gas=5_000_000
            )
            seeds.append((pair, a, amount_a, b, amount_b))
            weth_needed += sum(amt for tok, amt in ((a, amount_a), (b, amount_b)) if tok == weth)
    grant = {sym: _amount(spec.token_grant_usd, prices[sym], decimals[sym]) for sym in addresses}
    holders = [sim_wallet, *demo_wallets]
    await batch.call(deployer, weth, abi.encode_call("deposit()"), value=weth_needed, gas=100_000)
    for pair, a, amount_a, b, amount_b in seeds:
        for token, amount in ((a, amount_a), (b, amount_b)):
            await _pay(batch, deployer=deployer, weth=weth, token=token, to=pair, amount=amount)
        await batch.call(deployer, pair, abi.encode_call("mint(address)", deployer), gas=400_000)
    for holder in holders:
        for sym, token in addresses.items():
            if token == weth:
                await batch.call(holder, weth, abi.encode_call("deposit()"), value=grant[sym], gas=100_000)
            else:
                await batch.call(
                    deployer, token, abi.encode_call("mint(address,uint256)", holder, grant[sym]), gas=100_000
                )
    # The market simulator swaps through the routers.
    for dex_cfg in dexes:
        for token in addresses.values():
            assert dex_cfg.router is not None
            await batch.call(
                sim_wallet, token, abi.encode_call("approve(address,uint256)", dex_cfg.router, MAX_UINT)
            )
    await batch.flush(transact)

    deployment = Deployment(weth=weth, tokens=tokens, dexes=dexes, pools=pools, contracts={"weth": weth})
    await verify_pairs(client, deployment)
    return deployment


async def _pay(batch: Batch, *, deployer: str, weth: str, token: str, to: str, amount: int) -> None:
    if token == weth:
        await batch.call(
            deployer, weth, abi.encode_call("transfer(address,uint256)", to, amount), gas=100_000
        )
    else:
        await batch.call(deployer, token, abi.encode_call("mint(address,uint256)", to, amount), gas=100_000)


async def verify_pairs(client: ChainClient, deployment: Deployment) -> None:
    """The CREATE2 addresses (router's pairFor) must be what each factory registered."""
    factories = {d.name: d.factory for d in deployment.dexes}
    calls = [Call(factories[p.dex], abi.get_pair(p.token0, p.token1)) for p in deployment.pools]
    results = await client.batch_call(calls)
    for pool, result in zip(deployment.pools, results, strict=True):
        if result is None or abi.decode_address(result) != pool.address:
            raise DeploymentError(f"{pool.dex} pair {pool.address} does not match factory.getPair")


async def deploy_executor(
    client: ChainClient,
    transact: Transact,
    *,
    owner: str,
    factories: Sequence[str],
    sender: str | None = None,
) -> str:
    """Deploy an Executor owned by ``owner`` that accepts flash callbacks from pairs of ``factories``.

    ``sender`` (default: ``owner``) must be unlocked on anvil; it is impersonated if it is not."""
    sender = to_checksum_address(sender or owner)
    await client.request("anvil_impersonateAccount", [sender])
    balance = int(await client.request("eth_getBalance", [sender, "latest"]), 16)
    if balance < ETHER:
        await fund(client, [sender])
    batch = Batch(client)
    art = load_artifact("Executor")
    address = await batch.deploy(
        sender, deploy_data(art.bytecode, ["address", "address[]"], [owner, list(factories)]), gas=6_000_000
    )
    await batch.flush(transact)
    return address


async def mint_tokens(
    client: ChainClient,
    transact: Transact,
    deployment: Deployment,
    *,
    deployer: str,
    to: str,
    amounts: dict[str, int],
) -> None:
    """Give ``to`` tokens: MockTokens are minted by the deployer, WETH is wrapped by the deployer and sent."""
    batch = Batch(client)
    for symbol, amount in amounts.items():
        token = deployment.token(symbol).address
        if token == deployment.weth:
            await batch.call(deployer, token, abi.encode_call("deposit()"), value=amount, gas=100_000)
        await _pay(batch, deployer=deployer, weth=deployment.weth, token=token, to=to, amount=amount)
    await batch.flush(transact)
