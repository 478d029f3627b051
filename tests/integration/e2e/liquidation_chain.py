"""Chain-side helpers of the liquidation end-to-end tests: which borrower a price drop puts under
HF 1 alone, the Aave and pool state at any block, and the liquidation's outcome recomputed from
that state with Aave's own integer math (mevaas_chain.lending.math) and the pairs' (amm.v2)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_abi.abi import decode

from mevaas.events.v1 import events_pb2
from mevaas_chain import abi
from mevaas_chain.amm.v2 import get_amount_in, get_amount_out
from mevaas_chain.lending.index import LIQUIDATION_CALL_TOPIC, LendingIndex, LendingMarket
from mevaas_chain.lending.math import Liquidation, Position, Reserve, liquidation, percent_mul
from mevaas_local.devnet import DevnetChain
from mevaas_local.devnet.deploy import mint_tokens
from tests.fixtures.devnet import send
from tests.fixtures.lending import weth_collateralised, weth_crossing

PRICE_DECIMALS = 10**8
# Nobody but the target may cross within this much time (interest keeps lowering HFs).
SAFETY_S = 3600


@dataclass(frozen=True)
class Target:
    borrower: str
    collateral: str
    debt: str
    # The WETH oracle price (8 decimals) that puts the target, and only it, under 1.
    price: int
    # The next borrower's crossing: prices in (runner_up, price] put the target alone under 1.
    runner_up: int = 0

    @property
    def clearly_under(self) -> int:
        """A price that keeps the target under 1 by up to 1% (not just at the crossing, where a
        wei of interest either way tips it), still alone and above HF 0.95."""
        return max(self.runner_up + 1, self.price * 99 // 100)


async def lone_target(chain: DevnetChain, stable_debts: frozenset[str]) -> Target:
    """A borrower with only WETH as collateral and a debt in ``stable_debts`` that a WETH drop puts
    under HF 1 before anyone else, and the price that does it for it alone."""
    index = await _healed(chain)
    weth, now = chain.deployment.weth, index.head_timestamp
    crossings: list[tuple[int, Position]] = []
    for position in index.borrowers():
        if weth_collateralised(position, weth):
            crossings.append((weth_crossing(index, position, weth, now + SAFETY_S), position))
    crossings.sort(key=lambda c: -c[0])
    for rank, (_late, position) in enumerate(crossings):
        debts = [a for a, s in position.scaled_debt.items() if s]
        supplied = [a for a, s in position.scaled_collateral.items() if s]
        if supplied != [weth] or len(debts) != 1 or debts[0] not in stable_debts:
            continue
        price = weth_crossing(index, position, weth, now)
        runner_up = max((c[0] for i, c in enumerate(crossings) if i != rank), default=0)
        if price > runner_up:
            return Target(position.user, weth, debts[0], price, runner_up)
    raise AssertionError("no borrower crosses HF 1 alone on a WETH drop")


async def _healed(chain: DevnetChain) -> LendingIndex:
    """The market with every borrower that is (or soon would be) under 1 at today's prices, after
    what earlier tests on the shared devnet did to prices, pools and time, topped up: its largest
    collateral supplied again, thrice over, on its behalf. Then only the test's drop moves anyone."""
    market = LendingMarket.from_contracts(chain.config.contracts)
    assert market is not None
    symbols = {t.address: t.symbol for t in chain.deployment.tokens}
    for _round in range(4):
        index = LendingIndex(chain.client, market)
        await index.load()
        now = index.head_timestamp + SAFETY_S
        weak = [p for p in index.borrowers() if index.account(p.user, now).liquidatable]
        if not weak:
            return index
        for position in weak:
            asset, amount = max(
                (
                    (a, position.collateral_balance(index.reserves[a], now))
                    for a, scaled in position.scaled_collateral.items()
                    if scaled
                ),
                key=lambda held: held[1],
            )
            top_up = 3 * amount
            await mint_tokens(
                chain.client,
                chain.transact,
                chain.deployment,
                deployer=chain.deployer,
                to=chain.deployer,
                amounts={symbols[asset]: top_up},
            )
            await send(
                chain, chain.deployer, asset, abi.encode_call("approve(address,uint256)", market.pool, top_up)
            )
            supply = abi.encode_call(
                "supply(address,uint256,address,uint16)", asset, top_up, position.user, 0
            )
            receipt = await send(chain, chain.deployer, market.pool, supply)
            assert int(receipt["status"], 16) == 1
    raise AssertionError("borrowers stay under HF 1 after top-ups")


def usd(price: int) -> Decimal:
    return Decimal(price) / PRICE_DECIMALS


@dataclass(frozen=True)
class AaveState:
    reserves: dict[str, Reserve]
    position: Position
    prices: dict[str, int]
    flash_loan_premium: int


async def aave_state(chain: DevnetChain, borrower: str, block_hash: str) -> AaveState:
    """The reserves, the borrower's position and the prices after the block ``block_hash``."""
    market = LendingMarket.from_contracts(chain.config.contracts)
    assert market is not None
    index = LendingIndex(chain.client, market)
    await index.load()
    reserves = await index._read_reserves(sorted(index.reserves), block_hash)
    (position,) = (await index._read_positions([borrower], block_hash)).values()
    return AaveState(reserves, position, await index._read_prices(block_hash), index.flash_loan_premium)


async def donate(chain: DevnetChain, pair: str, token: str, *, share: int) -> tuple[str, int]:
    """Transfer ``1/share`` of a pair's ``token`` reserve to it from the deployer (who holds
    enough) and ``sync()`` it, in one block: a price move by a transaction other than ours.
    Returns the sync's hash and block."""
    r0, r1 = abi.decode_reserves(await chain.client.call(pair, abi.GET_RESERVES))
    token0 = abi.decode_address(await chain.client.call(pair, abi.encode_call("token0()")))
    amount = (r0 if token0.lower() == token.lower() else r1) // share
    transfer = abi.encode_call("transfer(address,uint256)", pair, amount)
    txs = [
        {"from": chain.deployer, "to": to, "data": "0x" + data.hex(), "gas": hex(200_000)}
        for to, data in ((token, transfer), (pair, abi.encode_call("sync()")))
    ]
    receipts = await chain.producer.transact(txs)
    assert [int(r["status"], 16) for r in receipts] == [1, 1]
    assert receipts[0]["blockNumber"] == receipts[1]["blockNumber"]
    return receipts[1]["transactionHash"], int(receipts[1]["blockNumber"], 16)


async def _reserves_for(chain: DevnetChain, hop: events_pb2.RouteHop, block: int) -> tuple[int, int]:
    r0, r1 = abi.decode_reserves(await chain.client.call(hop.pool, abi.GET_RESERVES, block))
    return (r0, r1) if int(hop.token_in, 16) < int(hop.token_out, 16) else (r1, r0)


async def route_reserves(chain: DevnetChain, action: events_pb2.LiquidationAction, block: int) -> list[Any]:
    return [await _reserves_for(chain, hop, block) for hop in action.collateral_swap]


def sizing(state: AaveState, action: events_pb2.LiquidationAction, at: int) -> Liquidation:
    sized = liquidation(
        state.position,
        state.reserves,
        state.prices,
        at,
        collateral_asset=action.collateral_asset.address,
        debt_asset=action.debt_asset.address,
        debt_to_cover=int(action.debt_to_cover),
    )
    assert sized is not None
    return sized


def profit(
    action: events_pb2.LiquidationAction, sized: Liquidation, reserves: list[tuple[int, int]], premium: int
) -> int:
    """The executor's debt-asset gain for this sizing on these pool reserves, per the financing."""
    hops = action.collateral_swap
    debt = sized.debt_to_cover
    amounts = [sized.collateral_to_liquidator]
    for hop, (r_in, r_out) in zip(hops, reserves, strict=True):
        amounts.append(get_amount_out(amounts[-1], r_in, r_out, hop.fee_bps))
    if action.financing == events_pb2.FINANCING_INVENTORY:
        return amounts[-1] - debt
    if action.financing == events_pb2.FINANCING_FLASH_LOAN:
        return amounts[-1] - debt - percent_mul(debt, premium)
    assert action.financing == events_pb2.FINANCING_FLASH_SWAP
    r_in, r_out = reserves[-1]
    owed = get_amount_in(debt, r_in, r_out, hops[-1].fee_bps)
    leftover = amounts[-2] - owed
    return get_amount_out(leftover, r_in + owed, r_out - debt, hops[-1].fee_bps) if leftover else 0


def moved(
    seen: AaveState,
    met: AaveState,
    seen_reserves: list[tuple[int, int]],
    met_reserves: list[tuple[int, int]],
    action: events_pb2.LiquidationAction,
) -> list[str]:
    """What, besides time, differs between the state a liquidation was predicted on and the one it
    met: the pair's oracle prices, the borrower's scaled balances, the route's pool reserves."""
    pair = (action.collateral_asset.address, action.debt_asset.address)
    changes = {
        "prices": [seen.prices[a] for a in pair] != [met.prices[a] for a in pair],
        "position": seen.position != met.position,
        "pools": seen_reserves != met_reserves,
    }
    return [name for name, changed in changes.items() if changed]


async def competing(
    chain: DevnetChain,
    action: events_pb2.LiquidationAction,
    first_block: int,
    last_block: int,
    ours: dict[str, Any],
) -> list[str]:
    """The transactions in ``first_block..last_block`` before ``ours`` that logged on the route's
    pools, the Aave pool or the pair's price feeds: what can move what the liquidation met."""
    assert chain.lending is not None
    feeds = [
        r.feed
        for r in chain.lending.oracle.market.reserves
        if r.asset.lower() in (action.collateral_asset.address.lower(), action.debt_asset.address.lower())
    ]
    addresses = [hop.pool for hop in action.collateral_swap] + [action.pool, *feeds]
    logs = await chain.client.request(
        "eth_getLogs", [{"fromBlock": hex(first_block), "toBlock": hex(last_block), "address": addresses}]
    )
    ours_at = (int(ours["blockNumber"], 16), int(ours["transactionIndex"], 16))
    return sorted(
        {
            log["transactionHash"]
            for log in logs
            if (int(log["blockNumber"], 16), int(log["transactionIndex"], 16)) < ours_at
        }
    )


@dataclass(frozen=True)
class LiquidationCall:
    debt_to_cover: int
    collateral: int
    liquidator: str
    receive_a_token: bool


def liquidation_call(receipt: dict[str, Any], pool: str) -> LiquidationCall:
    """The pool's LiquidationCall event in the receipt."""
    for log in receipt["logs"]:
        if log["address"].lower() == pool.lower() and log["topics"][0] == LIQUIDATION_CALL_TOPIC:
            debt, collateral, liquidator, receive = decode(
                ["uint256", "uint256", "address", "bool"], bytes.fromhex(log["data"][2:])
            )
            return LiquidationCall(int(debt), int(collateral), str(liquidator), bool(receive))
    raise AssertionError("no LiquidationCall in the receipt")


async def balance(chain: DevnetChain, token: str, holder: str, block: int | str = "latest") -> int:
    return abi.decode_uint(await chain.client.call(token, abi.balance_of(holder), block))
