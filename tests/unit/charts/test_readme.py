"""charts/mevaas/README.md names every value of values.yaml an SRE can set (free-form maps and
per-service blocks are named as a whole)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.fixtures.k8s import CHARTS

# Maps whose keys are the user's (labels, per-service blocks, resources ...): named as a whole.
WHOLE = {
    "image.overrides",
    "image.digests",
    "services",
    "auth.bootstrapAdminKey",
    "database.provision.adminSecret",
    "tls.certManager.issuerRef",
    "podSecurityContext",
    "containerSecurityContext",
    "operator.pdb",
    "operator.serviceAccount",
    "operator.resources",
    "operator.lifecycle.crdUpgrade",
    "operator.lifecycle.uninstall",
    "operator.lifecycle.resources",
    "operator.tenantDefaults.workerSecrets",
    "migrations.resources",
    "networkPolicy.dns",
}
FREE_FORM = re.compile(r"(podLabels|Labels|labels|annotations|env|nodeSelector|resources|pdb|autoscaling)$")


def leaves(values: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and path not in WHOLE and not FREE_FORM.search(key):
            out += leaves(value, path)
        else:
            out.append(path)
    return out


def test_the_readme_names_every_value() -> None:
    values = yaml.safe_load((CHARTS / "mevaas" / "values.yaml").read_text())
    readme = (CHARTS / "mevaas" / "README.md").read_text()
    table = readme[readme.index("## Values") :]
    named = set(re.findall(r"`([A-Za-z0-9_.<>]+)`", table))
    paths = leaves(values)
    assert len(paths) > 60
    missing = [p for p in paths if p not in named]
    assert not missing, f"values not in charts/mevaas/README.md's Values table: {missing}"
