"""LeverageProtectionService on the running strategy service (its engine following the devnet's
real Aave V3, execution answering which wallets are the tenant's): registration, reads, updates
through the allowed states, removal; bad input named by field in the BadRequest details (target <=
trigger, an unknown collateral or debt reserve, malformed levels, a chain without the market), another tenant's wallet NOT_FOUND, a position already under HF 1
FAILED_PRECONDITION on the subject ``account``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import grpc
import pytest
import pytest_asyncio
from eth_utils.address import to_checksum_address

from mevaas.execution.v1 import execution_pb2, execution_pb2_grpc
from mevaas.strategy.v1 import strategy_pb2 as pb
from mevaas.strategy.v1 import strategy_pb2_grpc
from mevaas_chain import abi
from mevaas_chain.lending.math import MAX_UINT, account_data
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from mevaas_strategy.events import LOOKUP_SUBJECT
from tests.fixtures.devnet import send
from tests.fixtures.execution import ExecutionHarness, fund, wait_for
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.integration.execution.helpers import clients
from tests.integration.execution.test_onboarding_gate import precondition_failures
from tests.integration.tenancy.helpers import create_tenant, field_violations

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def protection_execution(execution_harness: ExecutionHarness) -> AsyncIterator[Any]:
    runtime = await execution_harness.start(strategy_lookup_subject=LOOKUP_SUBJECT)
    yield runtime
    await execution_harness.stop(runtime)


async def _client(tenancy: Any, strategy: Any, execution: Any) -> MevaasClient:
    make = clients(tenancy)
    async with make(BOOTSTRAP_ADMIN_KEY) as admin:
        tenant = await create_tenant(admin)
    return make(
        tenant.owner_key,
        strategy=f"127.0.0.1:{strategy.grpc_port}",
        execution=f"127.0.0.1:{execution.grpc_port}",
    )


def _stub(client: MevaasClient) -> Any:
    return client.stub("strategy", strategy_pb2_grpc.LeverageProtectionServiceStub)


async def _wallet(client: MevaasClient) -> str:
    stub = client.stub("execution", execution_pb2_grpc.ExecutionServiceStub)
    created = await stub.CreateWallet(execution_pb2.CreateWalletRequest(idempotency_key=str(uuid.uuid4())))
    return str(created.wallet.address)


def _request(chain_id: int, account: str, **fields: Any) -> pb.ProtectPositionRequest:
    values: dict[str, Any] = {
        "idempotency_key": str(uuid.uuid4()),
        "chain_id": chain_id,
        "account": account,
        "trigger_health_factor": "1.2",
        "target_health_factor": "1.5",
        "emergency_enabled": True,
    }
    values.update(fields)
    return pb.ProtectPositionRequest(**values)


async def _error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def test_register_read_update_remove_and_bad_input(
    tenancy_service: Any, strategy_service: Any, protection_execution: Any, devnet: Devnet
) -> None:
    chain = devnet.main
    chain_id = chain.config.chain_id
    async with (
        await _client(tenancy_service, strategy_service, protection_execution) as mine,
        await _client(tenancy_service, strategy_service, protection_execution) as theirs,
    ):
        stub, wallet = _stub(mine), await _wallet(mine)
        created = (await stub.ProtectPosition(_request(chain_id, wallet))).position
        assert created.account == to_checksum_address(wallet)
        assert (created.trigger_health_factor, created.target_health_factor) == ("1.2", "1.5")
        # The emergency level defaults to halfway between 1 and the trigger.
        assert created.emergency_enabled and created.emergency_health_factor == "1.1"
        assert created.state == pb.PROTECTION_STATE_ACTIVE and created.registered_health_factor == ""
        got = (
            await stub.GetProtectedPosition(
                pb.GetProtectedPositionRequest(protection_id=created.protection_id)
            )
        ).position
        assert got == created
        listed = await stub.ListProtectedPositions(pb.ListProtectedPositionsRequest())
        assert [p.protection_id for p in listed.positions] == [created.protection_id]

        # Bad input, each named by its field (the BadRequest's field violations, not just the text).
        bad = await _error(stub.ProtectPosition(_request(chain_id, wallet, target_health_factor="1.2")))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(bad) == ["target_health_factor"]
        for field in ("collateral_asset", "debt_asset"):  # an address that is no reserve of the market
            bad = await _error(stub.ProtectPosition(_request(chain_id, wallet, **{field: "0x" + "12" * 20})))
            assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(bad) == [field]
            assert "is not a reserve" in (bad.details() or "")
        bad = await _error(stub.ProtectPosition(_request(chain_id, wallet, trigger_health_factor="0.9")))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(bad) == ["trigger_health_factor"]
        bad = await _error(stub.ProtectPosition(_request(chain_id, wallet, emergency_health_factor="1.3")))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(bad) == ["emergency_health_factor"]
        bad = await _error(stub.ProtectPosition(_request(999_999, wallet)))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(bad) == ["chain_id"]
        # Another tenant's wallet is not found for this one; a second protection is refused.
        other = await _wallet(theirs)
        bad = await _error(stub.ProtectPosition(_request(chain_id, other)))
        assert bad.code() == grpc.StatusCode.NOT_FOUND and "wallet" in (bad.details() or "")
        bad = await _error(stub.ProtectPosition(_request(chain_id, wallet)))
        assert bad.code() == grpc.StatusCode.FAILED_PRECONDITION
        # The other tenant does not see the protection.
        bad = await _error(
            _stub(theirs).GetProtectedPosition(
                pb.GetProtectedPositionRequest(protection_id=created.protection_id)
            )
        )
        assert bad.code() == grpc.StatusCode.NOT_FOUND

        # Update: levels and the pause, checked on the merged result.
        update = pb.UpdateProtectedPositionRequest(
            idempotency_key=str(uuid.uuid4()),
            protection_id=created.protection_id,
            target_health_factor="1.6",
            emergency=pb.EMERGENCY_LEVEL_OFF,
            state=pb.PROTECTION_STATE_PAUSED,
        )
        updated = (await stub.UpdateProtectedPosition(update)).position
        assert (updated.target_health_factor, updated.emergency_enabled, updated.state) == (
            "1.6",
            False,
            pb.PROTECTION_STATE_PAUSED,
        )
        # The same idempotency key replays the answer.
        assert (await stub.UpdateProtectedPosition(update)).position == updated
        bad = await _error(
            stub.UpdateProtectedPosition(
                pb.UpdateProtectedPositionRequest(
                    idempotency_key=str(uuid.uuid4()),
                    protection_id=created.protection_id,
                    trigger_health_factor="1.7",
                )
            )
        )
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "target_health_factor" in (
            bad.details() or ""
        )
        removed = (
            await stub.UnprotectPosition(pb.UnprotectPositionRequest(protection_id=created.protection_id))
        ).position
        assert removed.state == pb.PROTECTION_STATE_REMOVED
        bad = await _error(
            stub.UpdateProtectedPosition(
                pb.UpdateProtectedPositionRequest(
                    idempotency_key=str(uuid.uuid4()),
                    protection_id=created.protection_id,
                    state=pb.PROTECTION_STATE_ACTIVE,
                )
            )
        )
        assert bad.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert not (await stub.ListProtectedPositions(pb.ListProtectedPositionsRequest())).positions
        # Removed, the account can be protected again.
        again = (await stub.ProtectPosition(_request(chain_id, wallet))).position
        assert again.protection_id != created.protection_id


async def test_a_position_already_under_one_is_refused(
    tenancy_service: Any, strategy_service: Any, protection_execution: Any, devnet: Devnet
) -> None:
    chain = devnet.main
    assert chain.lending is not None
    weth = chain.lending.market.reserve("WETH")
    async with await _client(tenancy_service, strategy_service, protection_execution) as client:
        wallet = await _wallet(client)
        await fund(chain, wallet)
        await chain.client.request("anvil_impersonateAccount", [wallet])
        pool = chain.config.contracts["aave_pool"]
        deposit = "0x" + abi.encode_call("deposit()").hex()
        await chain.producer.transact(
            [{"from": wallet, "to": weth.asset, "data": deposit, "value": hex(10**18), "gas": hex(100_000)}]
        )
        await send(chain, wallet, weth.asset, abi.encode_call("approve(address,uint256)", pool, MAX_UINT))
        await send(
            chain,
            wallet,
            pool,
            abi.encode_call("supply(address,uint256,address,uint16)", weth.asset, 10**18, wallet, 0),
        )
        price = abi.decode_uint(await chain.client.call(weth.feed, abi.encode_call("latestAnswer()")))
        usdc = chain.lending.market.reserve("USDC").asset
        # Borrowed at 80% of the collateral's value (LTV 80.5%): HF 0.83 / 0.80 = 1.04.
        borrow = price * 80 * 10**6 // (100 * 10**8)
        await send(
            chain,
            wallet,
            pool,
            abi.encode_call("borrow(address,uint256,uint256,uint16,address)", usdc, borrow, 2, 0, wallet),
            gas=1_500_000,
        )
        stub = _stub(client)
        # A 6% drop puts it under 1 (0.98): refused once the engine has seen the block.
        await chain.lending.oracle.pin("WETH", Decimal(price) * Decimal("0.94") / 10**8, chain.transact)
        try:
            account = to_checksum_address(wallet)

            async def engine_sees_it_under_one() -> bool:
                # What the registration checks (loaded afresh when nothing follows the index).
                market = await strategy_service.engine.lending_now(chain.config.chain_id)
                lending = market.lending if market is not None else None
                if lending is None or account not in lending.positions:
                    return False
                position = lending.positions[account]
                return account_data(
                    position, lending.reserves, lending.prices, lending.block_timestamp
                ).liquidatable

            await wait_for(engine_sees_it_under_one, timeout_s=30)
            refused = await _error(stub.ProtectPosition(_request(chain.config.chain_id, wallet)))
            assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION, refused
            assert "under health factor 1" in (refused.details() or "")
            assert [(f.type, f.subject) for f in precondition_failures(refused)] == [
                ("HEALTH_FACTOR", "account")
            ]
            assert not (await stub.ListProtectedPositions(pb.ListProtectedPositionsRequest())).positions
        finally:
            await chain.lending.oracle.pin("WETH", Decimal(price) / 10**8, chain.transact)
            chain.lending.oracle.unpin("WETH")
