"""Opt-in Balancer V2 vault on a running devnet chain, from the pinned
``@balancer-labs/v2-deployments`` package's artifacts (the bytecode deployed on mainnet in task
20210418: the ``Authorizer`` and the ``Vault``, whose constructor creates its
``ProtocolFeesCollector``).

A flash loan lends the vault's own token balance (``flashLoan`` checks ``balanceOf(vault)``
against the amount and, afterwards, against that balance plus the fee), so the vault is funded by
a plain transfer: no pool, join or internal balance is involved. The flash-loan fee is 0 until
``set_flash_loan_fee`` grants the deployer the collector's ``setFlashLoanFeePercentage`` action
in the Authorizer and sets it. Nothing calls this by default: the standard devnet and
``make run`` have no Balancer vault.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from mevaas_chain import abi
from mevaas_chain.client import ChainClient
from mevaas_chain.contracts import Artifact, node_modules_dir
from mevaas_local.devnet.deploy import Batch, Deployment, DeploymentError, Transact, deploy_data, mint_tokens

BALANCER_PACKAGE = "@balancer-labs/v2-deployments"
SET_FLASH_LOAN_FEE = "setFlashLoanFeePercentage(uint256)"
# ProtocolFeesCollector's cap on the flash-loan fee: 1% (1e18 is 100%).
MAX_FLASH_LOAN_FEE = 10**16


@dataclass(frozen=True)
class BalancerDeployment:
    authorizer: str
    vault: str
    fees_collector: str


def load_balancer_artifact(task: str, name: str) -> Artifact:
    """``dist/tasks/<task>/artifact/<name>.json`` of the pinned deployments package."""
    path = node_modules_dir() / BALANCER_PACKAGE / "dist" / "tasks" / task / "artifact" / f"{name}.json"
    data = json.loads(path.read_text())
    return Artifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=bytes.fromhex(data["bytecode"].removeprefix("0x")),
        deployed_bytecode=bytes.fromhex(data["deployedBytecode"].removeprefix("0x")),
    )


async def deploy_balancer_vault(
    client: ChainClient,
    transact: Transact,
    deployment: Deployment,
    *,
    deployer: str,
    liquidity: Mapping[str, int],
) -> BalancerDeployment:
    """Deploy the Authorizer (``deployer`` its admin) and the Vault over the devnet's WETH (no pause
    window), and give the vault ``liquidity`` (symbol -> base units) to lend."""
    batch = Batch(client)
    authorizer = await batch.deploy(
        deployer,
        deploy_data(
            load_balancer_artifact("20210418-authorizer", "Authorizer").bytecode, ["address"], [deployer]
        ),
    )
    vault = await batch.deploy(
        deployer,
        deploy_data(
            load_balancer_artifact("20210418-vault", "Vault").bytecode,
            ["address", "address", "uint256", "uint256"],
            [authorizer, deployment.weth, 0, 0],
        ),
        gas=12_000_000,
    )
    await batch.flush(transact)
    # The vault's constructor deploys the collector as its first contract creation.
    collector = abi.create_address(vault, 1)
    reply = await client.call(vault, abi.encode_call("getProtocolFeesCollector()"))
    if abi.decode_address(reply) != collector:
        raise DeploymentError(f"Balancer vault {vault} reports no fees collector at {collector}")
    await mint_tokens(client, transact, deployment, deployer=deployer, to=vault, amounts=dict(liquidity))
    return BalancerDeployment(authorizer, vault, collector)


async def set_flash_loan_fee(
    client: ChainClient, transact: Transact, balancer: BalancerDeployment, *, admin: str, fee: int
) -> None:
    """Set the vault's flash-loan fee (1e18 = 100%, at most 1%) as the Authorizer's ``admin``."""
    if not 0 <= fee <= MAX_FLASH_LOAN_FEE:
        raise ValueError(f"flash-loan fee {fee} is outside [0, {MAX_FLASH_LOAN_FEE}]")
    reply = await client.call(
        balancer.fees_collector, abi.encode_call("getActionId(bytes4)", abi.selector(SET_FLASH_LOAN_FEE))
    )
    action = reply[:32]
    batch = Batch(client)
    await batch.call(admin, balancer.authorizer, abi.encode_call("grantRole(bytes32,address)", action, admin))
    await batch.call(admin, balancer.fees_collector, abi.encode_call(SET_FLASH_LOAN_FEE, fee))
    await batch.flush(transact)


async def flash_loan_fee(client: ChainClient, balancer: BalancerDeployment) -> int:
    """The collector's flash-loan fee percentage (1e18 = 100%)."""
    reply = await client.call(balancer.fees_collector, abi.encode_call("getFlashLoanFeePercentage()"))
    return abi.decode_uint(reply)
