"""Tenants written through the Kubernetes API (the emulator, admitting custom resources against the
chart's CRD as an API server does: tests.fixtures.crd_admission): what the schema refuses is
refused with the API server's 422 and a message naming the field, before anything is stored, so no
Tenant exists that charts/tenant cannot render; the longest name it admits renders, for both
isolations, into names and labels a cluster accepts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from mevaas_operator.config import OperatorConfig
from mevaas_operator.render import namespace_object, render
from tests.fixtures.k8s import CHARTS, K8sEmulator, helm_path
from tests.integration.operator.support import tenant_body

pytestmark = pytest.mark.integration

TENANTS = "/apis/mevaas.io/v1alpha1/tenants"
LONGEST = "t" + "-0123456789ab" * 4  # 53: a Helm release name's limit
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@pytest_asyncio.fixture(loop_scope="session")
async def api(k8s_emulator: K8sEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(k8s_emulator.url) as session:
        yield session


async def create(
    api: aiohttp.ClientSession, body: dict[str, Any], **params: str
) -> tuple[int, dict[str, Any], list[str]]:
    async with api.post(TENANTS, json=body, params=params) as response:
        return response.status, await response.json(), response.headers.getall("Warning", [])


async def stored(api: aiohttp.ClientSession, name: str) -> tuple[int, dict[str, Any]]:
    async with api.get(f"{TENANTS}/{name}") as response:
        return response.status, await response.json()


def causes(status: dict[str, Any], field: str) -> list[str]:
    return [c["message"] for c in status["details"]["causes"] if c["field"] == field]


@pytest.mark.parametrize(
    ("name", "spec", "field", "message"),
    [
        (LONGEST + "x", {}, "metadata.name", "Too long: may not be more than 53 bytes"),
        ("acme.corp", {}, "metadata.name", "metadata.name in body should match"),
        ("Acme", {}, "metadata.name", "a lowercase RFC 1123 subdomain"),
        ("bad-tier", {"tier": "gold"}, "spec.tier", 'Unsupported value: "gold": supported values: "starter"'),
        ("bad-owner", {"owners": [{"name": "alice"}]}, "spec.owners[0].role", "Required value"),
        (
            "bad-port",
            {"network": {"egress": [{"cidr": "203.0.113.1/32", "ports": [{"port": 70000}]}]}},
            "spec.network.egress[0].ports[0].port",
            "should be less than or equal to 65535",
        ),
        # A NATS subject token: a dot would put another tenant's subjects under this one's `<id>.>`.
        ("dotted-id", {"tenantId": "acme.corp"}, "spec.tenantId", "spec.tenantId in body should match"),
        (
            "dedicated-starter",
            {"tier": "starter", "isolation": "dedicated"},
            "spec",
            "dedicated isolation requires the enterprise tier",
        ),
    ],
    ids=[
        "name-too-long",
        "dotted-name",
        "uppercase-name",
        "bad-enum",
        "required",
        "maximum",
        "dotted-id",
        "cel",
    ],
)
async def test_a_tenant_the_schema_refuses_is_not_stored(
    api: aiohttp.ClientSession, name: str, spec: dict[str, Any], field: str, message: str
) -> None:
    code, status, _ = await create(api, tenant_body(name, spec))

    assert code == 422, status
    assert status["kind"] == "Status" and status["reason"] == "Invalid" and status["code"] == 422
    assert status["message"].startswith(f'Tenant.mevaas.io "{name}" is invalid: ')
    found = causes(status, field)
    assert any(message in m and f"{field}: {m}" in status["message"] for m in found), status
    assert (await stored(api, name))[0] == 404


async def test_an_unknown_field_is_pruned_with_a_warning_or_refused_when_strict(
    api: aiohttp.ClientSession,
) -> None:
    """A structural schema cannot forbid unknown fields (additionalProperties: false is not allowed
    next to properties): the API server drops them and warns, or, with fieldValidation=Strict
    (kubectl's default), refuses the object with 400, never 422."""
    body = tenant_body("colourful", {"tier": "starter", "colour": "red", "network": {"egres": []}})

    code, status, _ = await create(api, body, fieldValidation="Strict")
    assert code == 400 and status["reason"] == "BadRequest", status
    assert (
        'strict decoding error: unknown field "spec.colour", unknown field "spec.network.egres"'
        in status["message"]
    )
    assert (await stored(api, "colourful"))[0] == 404

    code, created, warnings = await create(api, body)
    assert code in (200, 201), created
    assert warnings == [
        '299 - "unknown field \\"spec.colour\\""',
        '299 - "unknown field \\"spec.network.egres\\""',
    ]
    assert created["spec"] == {"tier": "starter", "isolation": "shared", "network": {}}


async def test_an_update_the_schema_refuses_leaves_the_tenant_as_it_was(api: aiohttp.ClientSession) -> None:
    code, created, _ = await create(api, tenant_body("steady", {"tier": "professional"}))
    assert code in (200, 201), created

    for patch in ({"spec": {"tier": "gold"}}, {"spec": {"isolation": "dedicated"}}):
        async with api.patch(
            f"{TENANTS}/steady", json=patch, headers={"Content-Type": "application/merge-patch+json"}
        ) as response:
            assert response.status == 422, await response.text()

    code, tenant = await stored(api, "steady")
    assert code == 200 and tenant["spec"] == {"tier": "professional", "isolation": "shared"}


@pytest.mark.parametrize("spec", [{"tier": "starter"}, {"tier": "enterprise", "isolation": "dedicated"}])
async def test_the_longest_admitted_name_renders_into_names_a_cluster_accepts(
    api: aiohttp.ClientSession, spec: dict[str, Any]
) -> None:
    name = f"{LONGEST[:-1]}{'d' if spec['tier'] == 'enterprise' else 's'}"
    assert len(name) == 53
    code, created, _ = await create(api, tenant_body(name, spec))
    assert code in (200, 201), created

    config = OperatorConfig(helm=str(helm_path()), tenant_chart=CHARTS / "tenant")
    objects = [namespace_object(name, created["spec"]), *await render(config, name, created["spec"])]

    assert objects[0]["metadata"]["name"] == f"tenant-{name}"
    assert len(objects) > 5 and any(o["kind"] == "Deployment" for o in objects) == (
        spec["tier"] == "enterprise"
    )
    for obj in objects:
        meta = obj["metadata"]
        assert len(meta["name"]) <= 63 and DNS_LABEL.match(meta["name"]), meta["name"]
        for key, value in [*meta.get("labels", {}).items(), *_template_labels(obj)]:
            assert len(value) <= 63 and LABEL_VALUE.match(value), (obj["kind"], key, value)


def _template_labels(obj: dict[str, Any]) -> list[tuple[str, str]]:
    template = (obj.get("spec") or {}).get("template") or {}
    selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return [*((template.get("metadata") or {}).get("labels") or {}).items(), *selector.items()]
