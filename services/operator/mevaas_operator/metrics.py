"""The operator's Prometheus metrics (the chart's PrometheusRule alerts on them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

STATES = ("Provisioning", "Ready", "Failed", "Terminating")

RECONCILES = Counter(
    "mevaas_operator_reconciles_total", "Tenant reconciliations by outcome.", ["outcome", "trigger"]
)
RECONCILE_SECONDS = Histogram("mevaas_operator_reconcile_seconds", "Time to reconcile one Tenant.")
PRUNED = Counter(
    "mevaas_operator_pruned_objects_total", "Objects deleted because a Tenant no longer renders them."
)
DRIFT_REPAIRED = Counter(
    "mevaas_operator_drift_repaired_total",
    "Tenant objects a resync found missing, changed or extra and restored to the render.",
    ["kind"],
)
REJECTED_EVENTS = Counter(
    "mevaas_operator_rejected_events_total", "Tenant events dropped because tenancy did not sign them"
)
TENANTS = Gauge("mevaas_operator_tenants", "Tenants by the state the operator last gave them.", ["state"])


class TenantStates:
    """The state of every Tenant this process has reconciled, exported as `mevaas_operator_tenants`
    (every state always has a sample, so `state!="Ready"` alerts see a zero, not an absence)."""

    def __init__(self) -> None:
        self._states: dict[str, str] = {}
        self._export()

    def set(self, name: str, state: str) -> None:
        self._states[name] = state
        self._export()

    def forget(self, name: str) -> None:
        self._states.pop(name, None)
        self._export()

    def _export(self) -> None:
        for state in STATES:
            TENANTS.labels(state).set(sum(1 for s in self._states.values() if s == state))
