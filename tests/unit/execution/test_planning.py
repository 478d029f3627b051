"""Pure parts of the execution service: limits merging, staleness, gas caps, slippage floor,
executor calldata, realised profit from a receipt, session transitions, raw transaction decoding,
and the KEK settings."""

from __future__ import annotations

import base64

import pytest
from eth_abi.abi import encode
from eth_account import Account

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_chain.executor import (
    EXECUTED_TOPIC,
    ExecutorHop,
    encode_execute,
    encode_execute_flash,
    encode_execute_flash_loan,
)
from mevaas_chain.keystore import KeystoreError, SecretKey, decrypt_private_key, generate_wallet
from mevaas_chain.rawtx import RawTransactionError, decode_signed
from mevaas_chain.registry import ChainConfig, DexConfig
from mevaas_execution.domain import planning, sessions
from mevaas_execution.wallets import keyring_from_settings

WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20
POOL_A = "0x" + "aa" * 20
POOL_B = "0x" + "bb" * 20
FACTORY = "0x" + "f0" * 20
EXECUTOR = "0x" + "ee" * 20
CHAIN = ChainConfig(
    chain_id=31337,
    name="anvil",
    rpc_url="http://127.0.0.1:1",
    wrapped_native=WETH,
    dexes=[DexConfig(name="uni", factory=FACTORY, init_code_hash="0x" + "00" * 32)],
)


def opportunity(**overrides: object) -> events_pb2.Opportunity:
    opp = events_pb2.Opportunity(
        opportunity_id="o1",
        type=common_pb2.STRATEGY_TYPE_FLASH_ARBITRAGE,
        chain_id=31337,
        swap_cycle=events_pb2.SwapCycleAction(
            hops=[
                events_pb2.RouteHop(pool=POOL_A, token_in=WETH, token_out=USDC, dex="uni", fee_bps=30),
                events_pb2.RouteHop(pool=POOL_B, token_in=USDC, token_out=WETH, dex="uni", fee_bps=30),
            ],
            amount_in="1000",
            financing=events_pb2.FINANCING_FLASH_SWAP,
        ),
        expected_profit="500",
        profit_token=common_pb2.Token(chain_id=31337, address=WETH),
        gas_estimate=200_000,
        gas_price="10",
        expected_profit_net_of_gas="-1999500",
        deadline_block=10,
    )
    for key, value in overrides.items():
        if key == "profit_token":
            opp.profit_token.CopyFrom(value)  # type: ignore[arg-type]
        else:
            setattr(opp, key, value)
    return opp


def decision(limits: common_pb2.RiskLimits | None = None, **opp: object) -> events_pb2.RiskDecision:
    return events_pb2.RiskDecision(opportunity=opportunity(**opp), limits=limits or common_pb2.RiskLimits())


def test_merge_limits_takes_the_stricter_of_strategy_and_risk() -> None:
    settings = strategy_pb2.ExecutionSettings(
        max_slippage_bps=50,
        max_gas_price_wei="100",
        min_profit_threshold="7",
        execution_delay_ms=250,
        retry_attempts=2,
        submission_mode=common_pb2.SUBMISSION_MODE_PUBLIC_MEMPOOL,
    )
    limits = planning.merge_limits(
        settings,
        decision(common_pb2.RiskLimits(max_gas_price_wei="80", max_slippage_bps=100, min_profit="3")),
        common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE,
    )
    assert limits.max_gas_price_wei == 80
    assert limits.max_slippage_bps == 50
    assert limits.min_profit == 7
    assert (limits.execution_delay_ms, limits.retry_attempts) == (250, 2)
    assert limits.submission_mode == common_pb2.SUBMISSION_MODE_PUBLIC_MEMPOOL
    bare = planning.merge_limits(None, decision(), common_pb2.SUBMISSION_MODE_UNSPECIFIED)
    assert bare.max_gas_price_wei is None and bare.max_slippage_bps == 0
    assert bare.submission_mode == common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE
    # No strategy settings: resend missed bundles until the deadline, not zero times.
    assert bare.retry_attempts == planning.RETRY_UNTIL_DEADLINE


def test_staleness_and_gas_price() -> None:
    assert not planning.is_stale(10, 9)
    assert planning.is_stale(10, 10)
    assert not planning.is_stale(0, 10**9)
    capped = planning.merge_limits(
        None, decision(common_pb2.RiskLimits(max_gas_price_wei="100")), common_pb2.SUBMISSION_MODE_UNSPECIFIED
    )
    assert planning.gas_price_refusal(100, capped) is None
    refusal = planning.gas_price_refusal(101, capped)
    assert refusal is not None and "max gas price 100" in refusal
    assert planning.fee_caps(40, capped, priority_fee=10) == (90, 10)
    assert planning.fee_caps(95, capped, priority_fee=10) == (100, 5)


def test_next_base_fee_follows_eip1559() -> None:
    block = {"baseFeePerGas": hex(1000), "gasUsed": hex(0), "gasLimit": hex(30_000_000)}
    assert planning.next_base_fee(block) == 875
    assert planning.next_base_fee({**block, "gasUsed": hex(15_000_000)}) == 1000
    assert planning.next_base_fee({**block, "gasUsed": hex(30_000_000)}) == 1125


def test_min_profit_applies_slippage_and_never_allows_a_loss() -> None:
    limits = planning.merge_limits(
        None, decision(common_pb2.RiskLimits(max_slippage_bps=100)), common_pb2.SUBMISSION_MODE_UNSPECIFIED
    )
    assert planning.min_profit_on_chain(10_000, limits) == 9_900
    assert planning.min_profit_on_chain(0, limits) == 1


def test_executor_calldata_flash_and_own_capital() -> None:
    hops = [ExecutorHop(POOL_A, True, 30), ExecutorHop(POOL_B, False, 30)]
    assert planning.executor_calldata(opportunity().swap_cycle, CHAIN, 9) == encode_execute_flash(
        FACTORY, WETH, 1000, hops, 9
    )
    # The financing the action names decides, not the strategy type.
    own = opportunity(type=common_pb2.STRATEGY_TYPE_FLASH_ARBITRAGE).swap_cycle
    own.financing = events_pb2.FINANCING_INVENTORY
    assert planning.executor_calldata(own, CHAIN, 9) == encode_execute(WETH, 1000, hops, 9)
    unfinanced = opportunity().swap_cycle
    unfinanced.financing = events_pb2.FINANCING_UNSPECIFIED
    with pytest.raises(planning.PlanError, match="no financing"):
        planning.executor_calldata(unfinanced, CHAIN, 9)
    for bad in ("0", "12abc"):
        zero = opportunity().swap_cycle
        zero.amount_in = bad
        with pytest.raises(planning.PlanError):
            planning.executor_calldata(zero, CHAIN, 1)
    broken = opportunity().swap_cycle
    broken.hops[1].token_out = USDC
    with pytest.raises(planning.PlanError, match="does not end"):
        planning.executor_calldata(broken, CHAIN, 1)
    unknown = opportunity().swap_cycle
    unknown.hops[0].dex = "sushi"
    with pytest.raises(planning.PlanError):
        planning.executor_calldata(unknown, CHAIN, 1)


def test_executor_calldata_flash_loan_borrows_from_the_chains_own_aave_pool() -> None:
    hops = [ExecutorHop(POOL_A, True, 30), ExecutorHop(POOL_B, False, 30)]
    cycle = opportunity().swap_cycle
    cycle.financing = events_pb2.FINANCING_FLASH_LOAN
    cycle.flash_provider, cycle.flash_fee = "aave_v3", "1"
    aave = "0x" + "a5" * 20
    with_pool = CHAIN.model_copy(update={"contracts": {"aave_pool": aave}})
    assert planning.executor_calldata(cycle, with_pool, 9) == encode_execute_flash_loan(
        aave, WETH, 1000, hops, 9
    )
    with pytest.raises(planning.PlanError, match="no Aave pool"):
        planning.executor_calldata(cycle, CHAIN, 9)


def test_gas_rate_native_and_implied() -> None:
    assert planning.gas_rate(opportunity(), CHAIN) == (1, 1)
    usdc = opportunity(
        profit_token=common_pb2.Token(chain_id=31337, address=USDC),
        expected_profit="5000000",
        expected_profit_net_of_gas="3000000",
    )
    rate = planning.gas_rate(usdc, CHAIN)
    assert rate == (2_000_000, 2_000_000)
    assert planning.in_profit_token(3, (1, 2)) == 2  # costs round up


def receipt(status: int, profit: int) -> dict[str, object]:
    data = encode(["uint256", "uint256", "bool"], [1000, profit, True])
    return {
        "status": hex(status),
        "blockNumber": hex(12),
        "gasUsed": hex(100_000),
        "effectiveGasPrice": hex(7),
        "logs": [
            {
                "address": EXECUTOR,
                "topics": [EXECUTED_TOPIC, "0x" + "00" * 12 + WETH[2:]],
                "data": "0x" + data.hex(),
            }
        ],
    }


def test_outcome_from_receipt() -> None:
    outcome = planning.outcome_from_receipt(receipt(1, 900_000), EXECUTOR, (1, 1))
    assert outcome.success and outcome.block_number == 12
    assert outcome.gas_cost == 700_000
    assert outcome.gross_profit == 900_000 and outcome.realized_profit == 200_000
    reverted = planning.outcome_from_receipt({**receipt(0, 0), "logs": []}, EXECUTOR, (1, 1))
    assert not reverted.success and reverted.realized_profit == -700_000


def test_session_transitions() -> None:
    assert sessions.pause_target(sessions.RUNNING) == sessions.PAUSED
    assert sessions.resume_target(sessions.PAUSED) == sessions.RUNNING
    assert sessions.stop_target(sessions.PAUSED) == sessions.STOPPED
    assert sessions.stop_target(sessions.FAILED) == sessions.FAILED
    for refused in (sessions.STOPPED, sessions.FAILED):
        with pytest.raises(sessions.TransitionRefused):
            sessions.pause_target(refused)
        with pytest.raises(sessions.TransitionRefused):
            sessions.resume_target(refused)
    assert sessions.accepts_decisions(sessions.RUNNING)
    assert not any(
        sessions.accepts_decisions(s) for s in (sessions.PAUSED, sessions.STARTING, sessions.STOPPED)
    )


@pytest.mark.parametrize("typed", [False, True])
def test_decode_signed_matches_eth_account(typed: bool) -> None:
    account = Account.create()
    tx: dict[str, object] = {"nonce": 7, "gas": 21_000, "to": USDC, "value": 5, "data": b"", "chainId": 31337}
    if typed:
        tx.update(maxFeePerGas=10**9, maxPriorityFeePerGas=1, type=2)
    else:
        tx["gasPrice"] = 10**9
    signed = account.sign_transaction(tx)
    decoded = decode_signed(bytes(signed.raw_transaction))
    assert decoded.sender == account.address
    assert (decoded.chain_id, decoded.nonce) == (31337, 7)
    assert decoded.tx_hash == "0x" + bytes(signed.hash).hex()


def test_decode_signed_rejects_garbage() -> None:
    for raw in (b"", b"\x05abc", b"\xc0", b"\x02\xc0"):
        with pytest.raises(RawTransactionError):
            decode_signed(raw)


def test_keyring_from_settings_and_rotation() -> None:
    first = base64.b64encode(b"\x01" * 32).decode()
    second = base64.b64encode(b"\x02" * 32).decode()
    single = keyring_from_settings(first, "k1")
    record = generate_wallet("tenant", single)
    assert record.kek_id == "k1"
    ring = keyring_from_settings(f"k1:{first},k2:{second}", "k1")
    assert ring.current == "k1"
    assert keyring_from_settings(f"k1:{first},k2:{second}", "unknown").current == "k2"
    assert isinstance(decrypt_private_key(record, ring), SecretKey)
    with pytest.raises(KeystoreError):
        decrypt_private_key(record, keyring_from_settings(second, "k1"))
    with pytest.raises(ValueError):
        keyring_from_settings("not base64!", "k1")
