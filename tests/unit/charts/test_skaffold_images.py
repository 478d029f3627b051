"""skaffold.yaml against the repository, and the per-service Dockerfiles' promises (multi-stage,
pinned base, non-root, only that service's dependencies)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SKAFFOLD: dict[str, Any] = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
PLATFORM_SERVICES = ("tenancy", "strategy", "risk", "execution", "analytics", "gateway", "operator")
ARTIFACTS = {a["image"]: a for a in SKAFFOLD["build"]["artifacts"]}


def service_dirs() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))


def test_skaffold_shape() -> None:
    assert SKAFFOLD["apiVersion"].startswith("skaffold/v4beta")
    assert SKAFFOLD["kind"] == "Config"
    assert set(ARTIFACTS) == {f"mevaas-{s}" for s in PLATFORM_SERVICES}
    profiles = {p["name"]: p for p in SKAFFOLD["profiles"]}
    assert {"dev", "kind"} <= set(profiles)
    for profile in profiles.values():
        assert "patches" not in profile, "index-based JSON patches break when the base config changes"
    releases = SKAFFOLD["manifests"]["helm"]["releases"] + profiles["kind"]["manifests"]["helm"]["releases"]
    for release in releases:
        assert release["chartPath"] == "charts/mevaas"
        assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
        for values in release.get("valuesFiles", []):
            assert (ROOT / values).is_file(), values
        templates = release["setValueTemplates"]
        for service in PLATFORM_SERVICES:
            key = service.replace("-", "_")
            assert templates[f"image.overrides.{service}"] == f"{{{{.IMAGE_FULLY_QUALIFIED_mevaas_{key}}}}}"


def test_every_service_has_an_artifact() -> None:
    for service in service_dirs():
        assert f"mevaas-{service}" in ARTIFACTS, service


@pytest.mark.parametrize("image", sorted(ARTIFACTS))
def test_artifact_context_and_dockerfile_exist(image: str) -> None:
    service = image.removeprefix("mevaas-")
    if not (ROOT / "services" / service / "pyproject.toml").is_file():
        pytest.skip(f"services/{service} is not in the workspace yet")
    artifact = ARTIFACTS[image]
    context = ROOT / artifact["context"]
    assert context.is_dir()
    dockerfile = context / artifact["docker"]["dockerfile"]
    assert dockerfile.is_file(), dockerfile
    assert dockerfile == ROOT / "services" / service / "Dockerfile"


@pytest.mark.parametrize("service", service_dirs())
def test_dockerfile_is_hardened_and_scoped(service: str) -> None:
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1)), base.group(1)
    froms = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.M)
    assert len(froms) >= 2, "multi-stage"
    for image, _ in froms:
        assert image == "${PYTHON_IMAGE}" or re.search(r":\d+(\.\d+)+", image), f"unpinned base {image}"
    assert froms[-1] == ("${PYTHON_IMAGE}", "runtime")
    assert f"--package mevaas-{service}" in text
    assert "--no-dev" in text and "--frozen" in text
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert f'"-m", "mevaas_{service}"' in text
