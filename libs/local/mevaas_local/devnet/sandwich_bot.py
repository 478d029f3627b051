"""A sandwich bot living in the devnet: the adversary the Protect RPC protects against.

Before every block it reads the public mempool (the relay's ``txpool_content``: the signed public
transactions held for the block; a bundle's transactions are never there), decodes Uniswap V2
router swaps, and for each computes the most profitable sandwich on the pools' reserves now
(`mevaas_chain.amm.sandwich`, the contracts' integer math). When one gains at least
``min_profit``, it sends the relay a bundle for that block: its front-run, the victim's own signed
transaction, its back-run. That is how sandwiches are built where blocks come from a builder (as
the devnet's do: anvil runs ``--order fifo``, so ordering by gas price is the builder's choice,
here the relay's bundles first). Its front-run buys exactly what the router's ``getAmountsOut``
promises and its back-run sells all of it, so what it takes is its balance change of the hop's
input token, which `landed` records next to the profit it expected.

Opt-in: a test calls `attach`; ``mevaas up --sandwich-bot`` attaches one to the main chain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eth_utils.crypto import keccak

from mevaas_chain import abi
from mevaas_chain.amm.sandwich import VictimSwap, best_sandwich
from mevaas_chain.amm.v2 import SwapLeg
from mevaas_chain.client import Call, ChainClient
from mevaas_chain.mempool import PendingTx, TxpoolPoller
from mevaas_chain.signer import address_from_private_key, sign_transaction
from mevaas_chain.swaps import RouterSwap
from mevaas_local.devnet.core import DevnetChain
from mevaas_local.devnet.deploy import MAX_UINT, NO_DEADLINE, Deployment, mint_tokens
from mevaas_local.devnet.relay import BlockProducer, BlockResult, Bundle

log = logging.getLogger(__name__)

# keccak("mevaas devnet sandwich bot"): a devnet-only key, never fund it anywhere real.
BOT_KEY = keccak(text="mevaas devnet sandwich bot")
SWAP_EXACT_TOKENS = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
_SWAP_GAS = 250_000


@dataclass(frozen=True, slots=True)
class Sandwich:
    block_number: int
    victim: str
    pool: str
    token_in: str
    token_out: str
    front_in: int
    front_out: int
    expected_profit: int
    front_hash: str
    back_hash: str
    bundle_hash: str


@dataclass(frozen=True, slots=True)
class _Plan:
    router: str
    pool: str
    token_in: str
    token_out: str
    front_in: int
    front_out: int
    profit: int


class SandwichBot:
    def __init__(
        self,
        rpc: ChainClient,
        producer: BlockProducer,
        deployment: Deployment,
        *,
        chain_id: int,
        key: bytes = BOT_KEY,
        min_profit: int = 1,
    ) -> None:
        self.rpc = rpc
        self.producer = producer
        self.deployment = deployment
        self.chain_id = chain_id
        self.key = key
        self.address = address_from_private_key(key)
        self.min_profit = min_profit
        self.pool = TxpoolPoller(rpc, chain_id)
        self.sent: dict[str, Sandwich] = {}
        self.landed: list[Sandwich] = []
        self._dex = {d.router.lower(): d for d in deployment.dexes if d.router}

    def attach(self) -> None:
        self.producer.before_block.append(self._before_block)
        self.producer.after_block.append(self._after_block)

    def detach(self) -> None:
        self.producer.before_block.remove(self._before_block)
        self.producer.after_block.remove(self._after_block)

    async def stop(self) -> None:
        self.detach()
        await self.rpc.close()

    async def approve(self) -> None:
        """Approve every router for every token (public transactions, mined before returning;
        the bot's ETH and tokens are the caller's to give, e.g. anvil_setBalance and mint_tokens)."""
        nonce = int(await self.rpc.request("eth_getTransactionCount", [self.address, "latest"]), 16)
        approve = [
            (t.address, abi.encode_call("approve(address,uint256)", r, MAX_UINT))
            for t in self.deployment.tokens
            for r in self._dex
        ]
        hashes = [
            self.producer.submit_raw(self._sign(nonce + i, to, data, 100_000))
            for i, (to, data) in enumerate(approve)
        ]
        if not self.producer.running:
            await self.producer.mine_block()
        await self.producer.wait_receipts(hashes)

    def _sign(self, nonce: int, to: str, data: bytes, gas: int, gas_price: int = 10**10) -> bytes:
        tx = {
            "chainId": self.chain_id,
            "nonce": nonce,
            "gasPrice": gas_price,
            "gas": gas,
            "to": to,
            "value": 0,
            "data": data,
        }
        return sign_transaction(tx, self.key).raw

    async def _before_block(self, number: int) -> None:
        try:
            fresh = await self.pool.poll()
        except Exception:
            log.exception("sandwich bot: reading the pending pool failed")
            return
        used: set[str] = set()
        nonce: int | None = None
        for tx in fresh:
            if tx.swap is None or tx.sender.lower() == self.address.lower():
                continue
            plan = await self._plan(tx, tx.swap, used)
            if plan is None:
                continue
            if nonce is None:
                nonce = int(await self.rpc.request("eth_getTransactionCount", [self.address, "latest"]), 16)
            sandwich = await self._send(number, tx, plan, nonce)
            if sandwich is not None:
                nonce += 2
                used.add(sandwich.pool.lower())

    async def _plan(self, tx: PendingTx, swap: RouterSwap, used: set[str]) -> _Plan | None:
        """The best sandwich of ``swap`` on the reserves now, if it is worth ``min_profit``."""
        dex = self._dex.get(swap.router.lower())
        if dex is None or swap.eth_in:
            return None
        pairs = [
            abi.pair_address(dex.factory, dex.init_code_hash, a, b)
            for a, b in zip(swap.path, swap.path[1:], strict=False)
        ]
        if any(p.lower() in used for p in pairs):
            return None
        replies = await self.rpc.batch_call([Call(p, abi.GET_RESERVES) for p in pairs])
        legs = []
        for (a, b), reply in zip(zip(swap.path, swap.path[1:], strict=False), replies, strict=True):
            if reply is None:
                return None
            r0, r1 = abi.decode_reserves(reply)
            t0, _ = abi.sort_tokens(a, b)
            legs.append(
                SwapLeg(r0, r1, dex.fee_bps) if t0.lower() == a.lower() else SwapLeg(r1, r0, dex.fee_bps)
            )
        found = best_sandwich(VictimSwap(tuple(legs), swap.amount, swap.bound, swap.exact_in))
        if found is None or found.profit < self.min_profit:
            return None
        return _Plan(
            router=swap.router,
            pool=pairs[found.hop],
            token_in=swap.path[found.hop],
            token_out=swap.path[found.hop + 1],
            front_in=found.front_in,
            front_out=found.front_out,
            profit=found.profit,
        )

    async def _send(self, number: int, victim: PendingTx, plan: _Plan, nonce: int) -> Sandwich | None:
        # Pay above the victim, as a searcher bidding for its position would.
        price = max(victim.max_fee_per_gas, 10**9) * 2
        buy = abi.encode_call(
            SWAP_EXACT_TOKENS,
            plan.front_in,
            plan.front_out,
            [plan.token_in, plan.token_out],
            self.address,
            NO_DEADLINE,
        )
        sell = abi.encode_call(
            SWAP_EXACT_TOKENS, plan.front_out, 0, [plan.token_out, plan.token_in], self.address, NO_DEADLINE
        )
        front = self._sign(nonce, plan.router, buy, _SWAP_GAS, price)
        back = self._sign(nonce + 1, plan.router, sell, _SWAP_GAS, price)
        victim_raw = next(
            (r for r in self.producer.pending_raw() if "0x" + keccak(r).hex() == victim.tx_hash), None
        )
        if victim_raw is None:
            return None
        try:
            bundle: Bundle = await self.producer.send_bundle([front, victim_raw, back], number)
        except ValueError as exc:
            log.info("sandwich bot: bundle refused: %s", exc)
            return None
        sandwich = Sandwich(
            block_number=number,
            victim=victim.tx_hash,
            pool=plan.pool,
            token_in=plan.token_in,
            token_out=plan.token_out,
            front_in=plan.front_in,
            front_out=plan.front_out,
            expected_profit=plan.profit,
            front_hash=bundle.tx_hashes[0],
            back_hash=bundle.tx_hashes[2],
            bundle_hash=bundle.hash,
        )
        self.sent[bundle.hash] = sandwich
        return sandwich

    async def _after_block(self, result: BlockResult) -> None:
        for bundle_hash in result.bundles:
            sandwich = self.sent.pop(bundle_hash, None)
            if sandwich is not None:
                self.landed.append(sandwich)
                log.info("sandwich bot: sandwiched %s in block %d", sandwich.victim, result.number)
        for bundle_hash in result.dropped_bundles:
            self.sent.pop(bundle_hash, None)


async def start_bot(chain: DevnetChain, *, key: bytes = BOT_KEY, inventory_units: int = 10**9) -> SandwichBot:
    """A bot on ``chain``'s relay with ETH for gas, ``inventory_units`` whole units of every minted
    token (the relay holds the public pool it reads), its approvals mined, attached."""
    bot = SandwichBot(
        ChainClient(chain.relay.url), chain.producer, chain.deployment, chain_id=chain.spec.chain_id, key=key
    )
    await chain.client.request("anvil_setBalance", [bot.address, hex(10**6 * 10**18)])
    amounts = {
        t.symbol: inventory_units * 10**t.decimals for t in chain.deployment.tokens if t.symbol != "WETH"
    }
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=bot.address,
        amounts=amounts,
    )
    await bot.approve()
    bot.attach()
    return bot
