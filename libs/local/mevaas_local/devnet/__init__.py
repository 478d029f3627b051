"""Local EVM devnet: anvil seeded from the real Uniswap V2 artifacts, a market simulator and a
Flashbots-style bundle relay (see ``relay`` for the block production model)."""

from mevaas_local.devnet.core import DevAccount, Devnet, DevnetChain, dev_accounts
from mevaas_local.devnet.deploy import Deployment, PoolInfo, deploy_executor
from mevaas_local.devnet.relay import BlockProducer, BlockResult, Bundle, RelayServer
from mevaas_local.devnet.simulation import BundleRejected

__all__ = [
    "BlockProducer",
    "BlockResult",
    "Bundle",
    "BundleRejected",
    "Deployment",
    "DevAccount",
    "Devnet",
    "DevnetChain",
    "PoolInfo",
    "RelayServer",
    "deploy_executor",
    "dev_accounts",
]
