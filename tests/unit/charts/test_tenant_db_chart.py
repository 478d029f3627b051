"""The operator's tenant database logins in the rendered platform chart: its admin DSN and password
seed reach the operator as files only, the operator may write Secrets but never read one, and
nothing of it (nor any database URL) reaches what a dedicated tenant's namespace is rendered from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.k8s import CHARTS, ROOT, render_chart

PROD = ROOT / "deploy" / "values" / "prod.yaml"


@pytest.fixture(scope="module")
def prod() -> list[dict[str, Any]]:
    return render_chart("mevaas", [PROD], namespace="mevaas", release="mevaas")


def one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_the_operator_writes_secrets_and_never_reads_one(prod: list[dict[str, Any]]) -> None:
    role = one(prod, "ClusterRole", "mevaas-operator")
    rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert rules == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "patch", "delete"]}]
    off = render_chart(
        "mevaas",
        [PROD],
        namespace="mevaas",
        release="mevaas",
        set_values=["operator.tenantDatabase.enabled=false", "operator.tenantDataKeys.enabled=false"],
    )
    assert not [r for r in one(off, "ClusterRole", "mevaas-operator")["rules"] if "secrets" in r["resources"]]
    # Either writer needs the same rights (the data key Secret alone).
    keys_only = render_chart(
        "mevaas",
        [PROD],
        namespace="mevaas",
        release="mevaas",
        set_values=["operator.tenantDatabase.enabled=false"],
    )
    rules = [
        r for r in one(keys_only, "ClusterRole", "mevaas-operator")["rules"] if "secrets" in r["resources"]
    ]
    assert rules == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "patch", "delete"]}]
    env = {
        e["name"]: e.get("value")
        for e in one(keys_only, "Deployment", "mevaas-operator")["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert env["MEVAAS_TENANT_DATA_KEYS"] == "true"


def test_the_admin_login_is_a_file(prod: list[dict[str, Any]]) -> None:
    pod = one(prod, "Deployment", "mevaas-operator")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert not [e for e in container["env"] if "valueFrom" in e or "postgres" in str(e.get("value", ""))]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    files = {
        item["path"]: source["secret"]["name"]
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    assert files["tenant_db_admin_url"] == files["tenant_db_password_seed"] == "mevaas-tenant-db-admin"
    # And it may reach PostgreSQL for it.
    policy = one(prod, "NetworkPolicy", "mevaas-operator")
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert 5432 in ports


def test_no_database_url_reaches_a_dedicated_tenant(prod: list[dict[str, Any]], tmp_path: Path) -> None:
    defaults = one(prod, "ConfigMap", "mevaas-operator-tenant-defaults")["data"]["values.yaml"]
    path = tmp_path / "defaults.yaml"
    path.write_text(defaults)
    tenant = render_chart(
        "tenant",
        [path, CHARTS / "tenant" / "ci" / "enterprise-dedicated-values.yaml"],
        namespace="tenant-initech",
        release="initech",
    )
    text = defaults + yaml.safe_dump_all(tenant)
    for leaked in ("postgresql://", "postgres://", "mevaas-tenant-db-admin", "mevaas-kek", "mevaas-db-"):
        assert leaked not in text, leaked
    # The workers read the tenant's own logins, the Secrets the operator writes.
    names = {
        source["secret"]["name"]
        for o in tenant
        if o["kind"] == "Deployment"
        for v in o["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "secrets"
        for source in v["projected"]["sources"]
    }
    assert {"mevaas-tenant-db-strategy", "mevaas-tenant-db-execution"} <= names
