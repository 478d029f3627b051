"""Deploys an Aave V3 market on a devnet chain from the compiled artifacts shipped in the pinned
``@aave/core-v3`` npm package (the protocol's own bytecode, with its logic libraries linked).

The sequence follows Aave's own deployment scripts: addresses provider, ACL admin and manager, the
Pool and PoolConfigurator implementations behind the provider's proxies, the AaveOracle over one
``PriceFeed`` per asset (the market simulator moves them), the protocol data provider, one
interest-rate strategy per risk class, aToken / stable / variable debt token implementations, then
``initReserves`` and each reserve's risk parameters, and a liquidity provider's deposits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address

from mevaas_chain import abi
from mevaas_chain.client import Call, ChainClient
from mevaas_chain.contracts import Artifact, load_artifact, node_modules_dir
from mevaas_local.devnet.deploy import MAX_UINT, Batch, Deployment, DeploymentError, Transact, deploy_data

AAVE_PACKAGE = "@aave/core-v3"
RAY = 10**27
USD_UNIT = 10**8  # the AaveOracle's base currency is USD with 8 decimals, as on Aave's markets
MARKET_ID = "MEVaaS devnet"
_BIG_GAS = 20_000_000


@dataclass(frozen=True)
class RateModel:
    """DefaultReserveInterestRateStrategy parameters, as fractions of one (rays on chain)."""

    optimal_usage: Decimal
    base_rate: Decimal
    slope1: Decimal
    slope2: Decimal


STABLE_RATES = RateModel(Decimal("0.90"), Decimal(0), Decimal("0.04"), Decimal("0.60"))
VOLATILE_RATES = RateModel(Decimal("0.45"), Decimal(0), Decimal("0.04"), Decimal("3.00"))


@dataclass(frozen=True)
class ReserveSpec:
    """One reserve's risk parameters in basis points, close to Aave V3 Ethereum's."""

    symbol: str
    ltv_bps: int
    liquidation_threshold_bps: int
    liquidation_bonus_bps: int  # 10_500 = the liquidator gets 105% of the debt it repays
    reserve_factor_bps: int
    rates: RateModel
    stable: bool = False  # a USD stablecoin: its feed stays at $1
    liquidation_protocol_fee_bps: int = 1_000


RESERVES = (
    ReserveSpec("WETH", 8_050, 8_300, 10_500, 1_500, VOLATILE_RATES),
    ReserveSpec("WBTC", 7_300, 7_800, 10_500, 2_000, VOLATILE_RATES),
    ReserveSpec("LINK", 5_300, 6_800, 10_700, 2_000, VOLATILE_RATES),
    ReserveSpec("USDC", 7_700, 8_000, 10_450, 1_000, STABLE_RATES, stable=True),
    ReserveSpec("USDT", 7_500, 7_800, 10_450, 1_000, STABLE_RATES, stable=True),
    ReserveSpec("DAI", 7_700, 8_000, 10_500, 1_000, STABLE_RATES, stable=True),
)

_INIT_RESERVE_INPUT = "(address,address,address,uint8,address,address,address,address,string,string,string,string,string,string,bytes)"


@dataclass(frozen=True)
class AaveReserve:
    symbol: str
    asset: str
    decimals: int
    a_token: str
    variable_debt_token: str
    stable_debt_token: str
    feed: str
    spec: ReserveSpec


@dataclass(frozen=True)
class AaveMarket:
    addresses_provider: str
    pool: str
    configurator: str
    acl_manager: str
    oracle: str
    data_provider: str
    treasury: str
    reserves: tuple[AaveReserve, ...]

    def reserve(self, symbol: str) -> AaveReserve:
        return next(r for r in self.reserves if r.symbol == symbol)

    def contracts(self) -> dict[str, str]:
        """The entries this market adds to the chain registry's ``contracts``."""
        return {
            "aave_addresses_provider": self.addresses_provider,
            "aave_pool": self.pool,
            "aave_pool_configurator": self.configurator,
            "aave_acl_manager": self.acl_manager,
            "aave_oracle": self.oracle,
            "aave_data_provider": self.data_provider,
        }


@cache
def load_aave_artifact(path: str) -> tuple[Artifact, dict[str, list[tuple[int, int]]]]:
    """A Hardhat artifact of ``@aave/core-v3`` (``path`` like ``protocol/pool/Pool``) and its
    library link references: library name -> [(byte offset, length)]."""
    name = path.rsplit("/", 1)[-1]
    file = node_modules_dir() / AAVE_PACKAGE / "artifacts" / "contracts" / f"{path}.sol" / f"{name}.json"
    data = json.loads(file.read_text())
    links: dict[str, list[tuple[int, int]]] = {}
    for libraries in data.get("linkReferences", {}).values():
        for lib, refs in libraries.items():
            links.setdefault(lib, []).extend((r["start"], r["length"]) for r in refs)
    code = data["bytecode"].removeprefix("0x")
    # Unlinked placeholders are not hex; zero them so the bytes parse, then link() overwrites them.
    for refs in links.values():
        for start, length in refs:
            code = code[: 2 * start] + "00" * length + code[2 * (start + length) :]
    art = Artifact(name=name, abi=data["abi"], bytecode=bytes.fromhex(code), deployed_bytecode=b"")
    return art, links


def linked_bytecode(path: str, libraries: dict[str, str]) -> bytes:
    """The creation bytecode of ``path`` with every library reference set to its address."""
    art, links = load_aave_artifact(path)
    missing = set(links) - set(libraries)
    if missing:
        raise DeploymentError(f"{path} needs libraries {sorted(missing)}")
    code = bytearray(art.bytecode)
    for lib, refs in links.items():
        address = bytes.fromhex(libraries[lib].removeprefix("0x"))
        for start, length in refs:
            code[start : start + length] = address
    return bytes(code)


def call_data(signature: str, types: Sequence[str], args: Sequence[Any]) -> bytes:
    """Calldata for signatures ``abi.encode_call`` cannot split (tuple arguments)."""
    return abi.selector(signature) + encode(list(types), list(args))


def _ray(value: Decimal) -> int:
    return int(value * RAY)


def usd_answer(usd: Decimal | float) -> int:
    """A USD price as the feeds' 8-decimal answer."""
    return int(Decimal(str(usd)) * USD_UNIT)


async def deploy_aave(
    client: ChainClient,
    transact: Transact,
    deployment: Deployment,
    *,
    deployer: str,
    feed_owner: str,
    prices_usd: dict[str, Decimal],
    liquidity_usd: Decimal = Decimal(20_000_000),
) -> AaveMarket:
    """Deploy the market for the reserves of ``RESERVES`` that this chain has tokens for, owned by
    ``deployer`` (pool, risk and emergency admin); ``feed_owner`` moves the price feeds. The
    deployer then supplies ``liquidity_usd`` of each reserve so borrowers have liquidity."""
    symbols = {t.symbol for t in deployment.tokens}
    specs = [r for r in RESERVES if r.symbol in symbols]
    batch = Batch(client)
    provider = await batch.deploy(
        deployer,
        deploy_data(
            load_aave_artifact("protocol/configuration/PoolAddressesProvider")[0].bytecode,
            ["string", "address"],
            [MARKET_ID, deployer],
        ),
    )
    await batch.call(deployer, provider, abi.encode_call("setACLAdmin(address)", deployer), gas=200_000)
    acl = await batch.deploy(
        deployer,
        deploy_data(
            load_aave_artifact("protocol/configuration/ACLManager")[0].bytecode, ["address"], [provider]
        ),
    )
    await batch.call(deployer, provider, abi.encode_call("setACLManager(address)", acl), gas=200_000)
    for role in ("addPoolAdmin", "addRiskAdmin", "addEmergencyAdmin", "addAssetListingAdmin"):
        await batch.call(deployer, acl, abi.encode_call(f"{role}(address)", deployer), gas=200_000)
    libraries: dict[str, str] = {}
    for lib in (
        "BorrowLogic",
        "BridgeLogic",
        "EModeLogic",
        "LiquidationLogic",
        "PoolLogic",
        "SupplyLogic",
        "ConfiguratorLogic",
    ):
        libraries[lib] = await batch.deploy(
            deployer, "0x" + linked_bytecode(f"protocol/libraries/logic/{lib}", {}).hex(), gas=_BIG_GAS
        )
    libraries["FlashLoanLogic"] = await batch.deploy(
        deployer,
        "0x" + linked_bytecode("protocol/libraries/logic/FlashLoanLogic", libraries).hex(),
        gas=_BIG_GAS,
    )
    pool_impl = await batch.deploy(
        deployer,
        deploy_data(linked_bytecode("protocol/pool/Pool", libraries), ["address"], [provider]),
        gas=_BIG_GAS,
    )
    # As Aave's scripts do: initialise the bare implementation so nobody else can.
    await batch.call(deployer, pool_impl, abi.encode_call("initialize(address)", provider), gas=500_000)
    await batch.call(deployer, provider, abi.encode_call("setPoolImpl(address)", pool_impl), gas=_BIG_GAS)
    configurator_impl = await batch.deploy(
        deployer, "0x" + linked_bytecode("protocol/pool/PoolConfigurator", libraries).hex(), gas=_BIG_GAS
    )
    await batch.call(
        deployer, configurator_impl, abi.encode_call("initialize(address)", provider), gas=500_000
    )
    await batch.call(
        deployer,
        provider,
        abi.encode_call("setPoolConfiguratorImpl(address)", configurator_impl),
        gas=_BIG_GAS,
    )
    feed_art = load_artifact("PriceFeed")
    assets = {s.symbol: deployment.token(s.symbol).address for s in specs}
    feeds: dict[str, str] = {}
    for spec in specs:
        feeds[spec.symbol] = await batch.deploy(
            deployer,
            deploy_data(
                feed_art.bytecode, ["address", "int256"], [feed_owner, usd_answer(prices_usd[spec.symbol])]
            ),
            gas=1_000_000,
        )
    oracle = await batch.deploy(
        deployer,
        deploy_data(
            load_aave_artifact("misc/AaveOracle")[0].bytecode,
            ["address", "address[]", "address[]", "address", "address", "uint256"],
            [
                provider,
                list(assets.values()),
                [feeds[s] for s in assets],
                "0x" + "00" * 20,
                "0x" + "00" * 20,
                USD_UNIT,
            ],
        ),
        gas=_BIG_GAS,
    )
    await batch.call(deployer, provider, abi.encode_call("setPriceOracle(address)", oracle), gas=200_000)
    data_provider = await batch.deploy(
        deployer,
        deploy_data(load_aave_artifact("misc/AaveProtocolDataProvider")[0].bytecode, ["address"], [provider]),
        gas=_BIG_GAS,
    )
    await batch.call(
        deployer, provider, abi.encode_call("setPoolDataProvider(address)", data_provider), gas=200_000
    )
    await batch.flush(transact)

    pool_raw, configurator_raw = await client.batch_call(
        [
            Call(provider, abi.encode_call("getPool()")),
            Call(provider, abi.encode_call("getPoolConfigurator()")),
        ]
    )
    if pool_raw is None or configurator_raw is None:
        raise DeploymentError("the addresses provider has no pool or configurator")
    pool, configurator = abi.decode_address(pool_raw), abi.decode_address(configurator_raw)

    a_impl = await batch.deploy(
        deployer,
        deploy_data(load_aave_artifact("protocol/tokenization/AToken")[0].bytecode, ["address"], [pool]),
        gas=_BIG_GAS,
    )
    stable_impl = await batch.deploy(
        deployer,
        deploy_data(
            load_aave_artifact("protocol/tokenization/StableDebtToken")[0].bytecode, ["address"], [pool]
        ),
        gas=_BIG_GAS,
    )
    variable_impl = await batch.deploy(
        deployer,
        deploy_data(
            load_aave_artifact("protocol/tokenization/VariableDebtToken")[0].bytecode, ["address"], [pool]
        ),
        gas=_BIG_GAS,
    )
    strategies: dict[RateModel, str] = {}
    strategy_code = load_aave_artifact("protocol/pool/DefaultReserveInterestRateStrategy")[0].bytecode
    for model in {s.rates for s in specs}:
        strategies[model] = await batch.deploy(
            deployer,
            deploy_data(
                strategy_code,
                ["address"] + ["uint256"] * 9,
                [
                    provider,
                    _ray(model.optimal_usage),
                    _ray(model.base_rate),
                    _ray(model.slope1),
                    _ray(model.slope2),
                    0,
                    0,
                    0,
                    0,
                    _ray(Decimal("0.2")),
                ],
            ),
            gas=_BIG_GAS,
        )
    treasury = deployer
    inputs = [
        (
            a_impl,
            stable_impl,
            variable_impl,
            deployment.token(s.symbol).decimals,
            strategies[s.rates],
            assets[s.symbol],
            treasury,
            "0x" + "00" * 20,
            f"Aave devnet {s.symbol}",
            f"a{s.symbol}",
            f"Aave devnet variable debt {s.symbol}",
            f"variableDebt{s.symbol}",
            f"Aave devnet stable debt {s.symbol}",
            f"stableDebt{s.symbol}",
            b"",
        )
        for s in specs
    ]
    await batch.call(
        deployer,
        configurator,
        call_data(f"initReserves({_INIT_RESERVE_INPUT}[])", [f"{_INIT_RESERVE_INPUT}[]"], [inputs]),
        gas=_BIG_GAS * 2,
    )
    for s in specs:
        asset = assets[s.symbol]
        for data in (
            abi.encode_call(
                "configureReserveAsCollateral(address,uint256,uint256,uint256)",
                asset,
                s.ltv_bps,
                s.liquidation_threshold_bps,
                s.liquidation_bonus_bps,
            ),
            abi.encode_call("setReserveBorrowing(address,bool)", asset, True),
            abi.encode_call("setReserveFactor(address,uint256)", asset, s.reserve_factor_bps),
            abi.encode_call(
                "setLiquidationProtocolFee(address,uint256)", asset, s.liquidation_protocol_fee_bps
            ),
            abi.encode_call("setReserveFlashLoaning(address,bool)", asset, True),
        ):
            await batch.call(deployer, configurator, data, gas=1_000_000)
    # Aave V3 Ethereum's flash-loan premium: 5 bps.
    await batch.call(
        deployer, configurator, abi.encode_call("updateFlashloanPremiumTotal(uint128)", 5), gas=500_000
    )
    await batch.flush(transact)

    reserve_data = await client.batch_call(
        [
            Call(data_provider, abi.encode_call("getReserveTokensAddresses(address)", assets[s.symbol]))
            for s in specs
        ]
    )
    reserves: list[AaveReserve] = []
    for s, raw in zip(specs, reserve_data, strict=True):
        if raw is None:
            raise DeploymentError(f"reserve {s.symbol} was not initialised")
        a_token, stable_debt, variable_debt = (
            to_checksum_address(x) for x in abi.decode_result(["address", "address", "address"], raw)
        )
        reserves.append(
            AaveReserve(
                s.symbol,
                assets[s.symbol],
                deployment.token(s.symbol).decimals,
                a_token,
                variable_debt,
                stable_debt,
                feeds[s.symbol],
                s,
            )
        )
    market = AaveMarket(provider, pool, configurator, acl, oracle, data_provider, treasury, tuple(reserves))
    await supply_liquidity(
        client, transact, deployment, market, supplier=deployer, prices_usd=prices_usd, usd_each=liquidity_usd
    )
    return market


async def supply_liquidity(
    client: ChainClient,
    transact: Transact,
    deployment: Deployment,
    market: AaveMarket,
    *,
    supplier: str,
    prices_usd: dict[str, Decimal],
    usd_each: Decimal,
) -> None:
    """``supplier`` gets and supplies ``usd_each`` of every reserve (MockTokens minted, WETH wrapped)."""
    batch = Batch(client)
    for r in market.reserves:
        amount = int(usd_each / prices_usd[r.symbol] * 10**r.decimals)
        if r.asset == deployment.weth:
            await batch.call(supplier, r.asset, abi.encode_call("deposit()"), value=amount, gas=100_000)
        else:
            await batch.call(
                supplier, r.asset, abi.encode_call("mint(address,uint256)", supplier, amount), gas=100_000
            )
        await batch.call(
            supplier, r.asset, abi.encode_call("approve(address,uint256)", market.pool, MAX_UINT), gas=100_000
        )
        await batch.call(
            supplier,
            market.pool,
            abi.encode_call("supply(address,uint256,address,uint16)", r.asset, amount, supplier, 0),
            gas=1_000_000,
        )
    await batch.flush(transact)
