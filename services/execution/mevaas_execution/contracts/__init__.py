"""The tenants' executor contracts: lookup, deployment and liveness (``liveness``), and their SQL
(``store``)."""

from mevaas_execution.contracts.liveness import RUNTIME_CODE, ExecutorContracts, ExecutorMissing, code_problem

__all__ = ["RUNTIME_CODE", "ExecutorContracts", "ExecutorMissing", "code_problem"]
