"""`python -m mevaas_operator`: the tenant operator (in-cluster config, or kubeconfig, or
MEVAAS_KUBE_URL for an unauthenticated URL such as `kubectl proxy`)."""

from __future__ import annotations

import logging
import os

import kopf
from prometheus_client import start_http_server

from mevaas_operator.config import OperatorConfig
from mevaas_operator.handlers import build_registry


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format='{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}',
    )
    config = OperatorConfig.from_env()
    start_http_server(config.metrics_port)
    kopf.run(
        registry=build_registry(config),
        clusterwide=True,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz",
    )


if __name__ == "__main__":
    main()
