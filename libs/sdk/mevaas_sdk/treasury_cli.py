"""`mevaas positions`, `wallets`, `withdraw`, `deposit`: the tenant's funds as the chain holds them.

Amounts are typed and shown in whole tokens (`1.5 WETH`), resolved with the token's decimals as
the server reports them (GetPositions), exactly; `--raw` means integer base units. A token is
named by symbol or address; the chain's native coin by its symbol (e.g. ETH) or the zero address.
Money-moving commands ask first (`--yes` skips the question).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from mevaas_sdk.cli_support import (
    JsonOption,
    RawOption,
    YesOption,
    confirm,
    console,
    enum_name,
    fail,
    print_json,
    run_call,
    table,
)
from mevaas_sdk.units import AmountError, format_units, parse_base_units, to_base_units

app = typer.Typer(help="The tenant's funds: positions, wallets, withdraw, deposit.", no_args_is_help=True)

ZERO_ADDRESS = "0x" + "00" * 20
PAGE_SIZE = 200
ChainOption = Annotated[int, typer.Option("--chain", help="Chain id; needed when the token is on several.")]
WalletOption = Annotated[str, typer.Option("--wallet", help="Wallet address; the default wallet if omitted.")]
KeyOption = Annotated[
    str,
    typer.Option(help="Retry-safe key: a retry with the same key moves nothing again. Random if omitted."),
]


@dataclass(frozen=True)
class Holding:
    """One token of one wallet (and its executor) on one chain, as GetPositions reports it."""

    chain_id: int
    address: str
    symbol: str
    decimals: int
    wallet: str
    executor: str
    wallet_balance: int
    executor_balance: int

    @property
    def native(self) -> bool:
        return self.address == ZERO_ADDRESS

    def show(self, base_units: int) -> str:
        return f"{format_units(base_units, self.decimals)} {self.symbol}"


async def _positions(client: Any, chain_id: int, wallet: str, include_zero: bool) -> Any:
    from mevaas.common.v1 import common_pb2
    from mevaas.portfolio.v1 import portfolio_pb2

    combined = portfolio_pb2.GetPositionsResponse()
    token = ""
    while True:
        page = await client.portfolio.GetPositions(
            portfolio_pb2.GetPositionsRequest(
                page=common_pb2.PageRequest(page_size=PAGE_SIZE, page_token=token),
                chain_id=chain_id,
                wallet_address=wallet,
                include_zero=include_zero,
            )
        )
        if not token:  # the totals are over all pages; every page carries them
            combined.MergeFrom(page)
        else:
            combined.positions.extend(page.positions)
        token = page.page.next_page_token
        if not token:
            combined.ClearField("page")
            return combined


async def _wallets(client: Any) -> list[Any]:
    from mevaas.common.v1 import common_pb2
    from mevaas.execution.v1 import execution_pb2

    wallets: list[Any] = []
    token = ""
    while True:
        page = await client.execution.ListWallets(
            execution_pb2.ListWalletsRequest(
                page=common_pb2.PageRequest(page_size=PAGE_SIZE, page_token=token)
            )
        )
        wallets.extend(page.wallets)
        token = page.page.next_page_token
        if not token:
            return wallets


@app.command("positions")
def positions(
    chain: Annotated[int, typer.Option("--chain", help="Only this chain.")] = 0,
    wallet: Annotated[str, typer.Option("--wallet", help="Only this wallet.")] = "",
    zero: Annotated[bool, typer.Option("--zero", help="Include zero balances.")] = False,
    raw: RawOption = False,
    as_json: JsonOption = False,
) -> None:
    """Holdings read from the chain: wallet and executor contract separately and summed, valued in USD."""
    from google.protobuf.json_format import MessageToDict

    response = run_call(lambda c: _positions(c, chain, wallet, zero))
    if as_json:
        print_json(MessageToDict(response, preserving_proto_field_name=True))
        return
    shown = table("chain", "token", "wallet", "in wallet", "in executor", "total", "USD value", "block")
    for p in response.positions:
        decimals = p.token.decimals

        def amount(base: str, human: str, decimals: int = decimals) -> str:
            return base if raw else (human or format_units(base or "0", decimals))

        value = (
            f"unpriced ({p.unpriced_reason})"
            if p.unpriced
            else f"{p.notional_value.amount} ({p.price_source})"
        )
        shown.add_row(
            str(p.token.chain_id),
            p.token.symbol or p.token.address,
            p.wallet_address,
            amount(p.wallet_balance, p.wallet_amount),
            amount(p.executor_balance, p.executor_amount),
            amount(p.balance, p.amount),
            value,
            str(p.as_of_block),
        )
    console.print(shown)
    total = (
        f"total: {response.total_notional_value.amount} USD"
        if response.HasField("total_notional_value")
        else f"total: {response.priced_notional_value.amount or '0'} USD priced, "
        f"{response.unpriced_count} position(s) unpriced"
    )
    console.print(total, highlight=False, markup=False)


@app.command("wallets")
def wallets(as_json: JsonOption = False) -> None:
    """Wallets with their executor contract per chain and its liveness (code read at the head)."""
    from google.protobuf.json_format import MessageToDict

    from mevaas.execution.v1 import execution_pb2

    listed = run_call(_wallets)
    if as_json:
        print_json({"wallets": [MessageToDict(w, preserving_proto_field_name=True) for w in listed]})
        return
    shown = table("address", "label", "default", "imported", "executors (chain address liveness)")
    for w in listed:
        executors = "\n".join(
            f"{e.chain_id} {e.address} {enum_name(execution_pb2.ExecutorLiveness, e.liveness)}"
            + (f": {e.problem}" if e.problem else "")
            for e in w.executors
        )
        shown.add_row(
            w.address, w.label, "yes" if w.is_default else "", "yes" if w.imported else "", executors
        )
    console.print(shown)


def _pick_wallet(listed: list[Any], wanted: str) -> str:
    if wanted:
        return wanted
    default = [w.address for w in listed if w.is_default] or [w.address for w in listed]
    if not default:
        raise fail("the tenant has no wallet: create one with `mevaas exec wallet`", 1)
    if len(default) > 1:
        raise fail("several wallets and none is the default: pass --wallet")
    return str(default[0])


def _pick_token(found: list[Any], token: str, chain: int) -> Holding:
    wanted = token.lower()
    matches = [
        p
        for p in found
        if p.token.address.lower() == wanted
        or (p.token.symbol.lower() == wanted and not wanted.startswith("0x"))
    ]
    if not matches:
        known = sorted({f"{p.token.symbol} ({p.token.chain_id})" for p in found})
        where = f" on chain {chain}" if chain else ""
        raise fail(f"unknown token {token!r}{where}; the wallet's tokens: {', '.join(known) or 'none'}")
    chains = sorted({p.token.chain_id for p in matches})
    if len(chains) > 1:
        raise fail(f"{token} is on chains {', '.join(map(str, chains))}: pass --chain")
    p = matches[0]
    return Holding(
        chain_id=p.token.chain_id,
        address=p.token.address,
        symbol=p.token.symbol or p.token.address,
        decimals=p.token.decimals,
        wallet=p.wallet_address,
        executor=p.executor_address,
        wallet_balance=int(p.wallet_balance or 0),
        executor_balance=int(p.executor_balance or 0),
    )


async def _resolve(client: Any, token: str, chain: int, wallet: str) -> Holding:
    address = _pick_wallet(await _wallets(client), wallet)
    found = await _positions(client, chain, address, include_zero=True)
    holding = _pick_token(list(found.positions), token, chain)
    if not holding.executor:
        raise fail(f"wallet {address} has no executor contract on chain {holding.chain_id} yet", 1)
    return holding


def _amount(text: str, holding: Holding, raw: bool) -> int:
    try:
        value = parse_base_units(text) if raw else to_base_units(text, holding.decimals, holding.symbol)
    except AmountError as exc:
        raise fail(str(exc)) from None
    if value == 0:
        raise fail("amount must be more than 0")
    return value


def _report(transfer: Any, holding: Holding, as_json: bool, verb: str) -> None:
    from google.protobuf.json_format import MessageToDict

    if as_json:
        print_json(MessageToDict(transfer, preserving_proto_field_name=True))
    else:
        console.print(
            f"{verb} {holding.show(int(transfer.amount))} ({transfer.amount} base units) on chain "
            f"{transfer.chain_id}: {transfer.status}, block {transfer.block_number}, tx {transfer.tx_hash}, "
            f"gas {transfer.gas_cost_wei} wei, transfer {transfer.transfer_id}",
            highlight=False,
            markup=False,
        )
    if transfer.status != "included":
        raise fail(f"the transfer {transfer.transfer_id} {transfer.status}: {transfer.error}", 1)


@app.command("withdraw")
def withdraw(
    amount: Annotated[str, typer.Argument(help="Whole tokens, e.g. 1.5 (base units with --raw).")],
    token: Annotated[str, typer.Argument(help="Symbol (WETH, ETH) or token address.")],
    chain: ChainOption = 0,
    wallet: WalletOption = "",
    to: Annotated[
        str, typer.Option("--to", help="Destination; the wallet if omitted (else allow-listed).")
    ] = "",
    raw: RawOption = False,
    yes: YesOption = False,
    idempotency_key: KeyOption = "",
    as_json: JsonOption = False,
) -> None:
    """Move funds out of the wallet's executor contract to the wallet (or an allow-listed address)."""
    from mevaas.execution.v1 import execution_pb2

    holding = run_call(lambda c: _resolve(c, token, chain, wallet))
    value = _amount(amount, holding, raw)
    destination = to or holding.wallet
    confirm(
        f"withdraw {holding.show(value)} ({value} base units) on chain {holding.chain_id} from executor "
        f"{holding.executor} (holds {holding.show(holding.executor_balance)}) to {destination}?",
        yes,
    )
    request = execution_pb2.WithdrawRequest(
        idempotency_key=idempotency_key or str(uuid.uuid4()),
        chain_id=holding.chain_id,
        wallet_address=holding.wallet,
        token_address="" if holding.native else holding.address,
        amount=str(value),
        to_address=to,
    )
    transfer = run_call(lambda c: c.execution.Withdraw(request)).transfer
    _report(transfer, holding, as_json, "withdrew")


@app.command("deposit")
def deposit(
    amount: Annotated[str, typer.Argument(help="Whole tokens, e.g. 1.5 (base units with --raw).")],
    token: Annotated[str, typer.Argument(help="Symbol (WETH, ETH) or token address.")],
    chain: ChainOption = 0,
    wallet: WalletOption = "",
    raw: RawOption = False,
    yes: YesOption = False,
    idempotency_key: KeyOption = "",
    as_json: JsonOption = False,
) -> None:
    """Fund the executor contract's inventory from its wallet (what dex_arbitrage trades with)."""
    from mevaas.execution.v1 import execution_pb2

    holding = run_call(lambda c: _resolve(c, token, chain, wallet))
    value = _amount(amount, holding, raw)
    confirm(
        f"deposit {holding.show(value)} ({value} base units) on chain {holding.chain_id} from wallet "
        f"{holding.wallet} (holds {holding.show(holding.wallet_balance)}) into executor {holding.executor}?",
        yes,
    )
    request = execution_pb2.DepositRequest(
        idempotency_key=idempotency_key or str(uuid.uuid4()),
        chain_id=holding.chain_id,
        wallet_address=holding.wallet,
        token_address="" if holding.native else holding.address,
        amount=str(value),
    )
    transfer = run_call(lambda c: c.execution.Deposit(request)).transfer
    _report(transfer, holding, as_json, "deposited")
