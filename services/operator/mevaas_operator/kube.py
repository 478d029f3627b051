"""A small Kubernetes client for the objects the tenant chart renders: create-or-PATCH (JSON merge
patch; no server-side apply, so it also works against API emulators), list, delete, and status.
The official client is synchronous, so every call runs in a worker thread.

Drift, including fields added by hand that the render never sets (a label, a container's
`command`), is found by a fingerprint: the operator hashes each object as the API server returned
it from its write (the render plus the server's defaults), and keeps the hash in memory and in an
annotation; a live object whose hash differs was changed by someone else, and is rewritten so
that every field the render does not set is removed (the server then re-adds its defaults). Server-side
apply would not do that: it keeps fields another field manager owns."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3

LAST_APPLIED = "mevaas.io/last-applied"
FINGERPRINT = "mevaas.io/applied-fingerprint"
# Written by the API server or by controllers that own them, never drift: the namespace name label,
# the deployment controller's revision, `kubectl rollout restart`'s timestamp (an SRE's restart).
SERVER_LABELS = frozenset({"kubernetes.io/metadata.name"})
SERVER_ANNOTATIONS = frozenset({FINGERPRINT, "deployment.kubernetes.io/revision"})
TEMPLATE_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/restartedAt"})
# Of a Namespace only its labels and annotations are the operator's (spec.finalizers and status
# belong to the namespace controller).
METADATA_ONLY = frozenset({"Namespace"})
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def collection(self, namespace: str | None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced:
            return f"{prefix}/namespaces/{namespace}/{self.plural}"
        return f"{prefix}/{self.plural}"


# Everything charts/tenant renders, in the order the operator applies it.
KINDS: dict[str, Kind] = {
    k.kind: k
    for k in [
        Kind("v1", "Namespace", "namespaces", namespaced=False),
        Kind("v1", "ResourceQuota", "resourcequotas", namespaced=True),
        Kind("v1", "LimitRange", "limitranges", namespaced=True),
        Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", namespaced=True),
        Kind("v1", "ServiceAccount", "serviceaccounts", namespaced=True),
        Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", namespaced=True),
        Kind("v1", "ConfigMap", "configmaps", namespaced=True),
        Kind("apps/v1", "Deployment", "deployments", namespaced=True),
    ]
}
TENANT_KIND = Kind("mevaas.io/v1alpha1", "Tenant", "tenants", namespaced=False)
# Read only: the cluster's warnings about a tenant's pods say why a Deployment is not available.
EVENT_KIND = Kind("v1", "Event", "events", namespaced=True)
# Written, never read: the Secrets the operator makes for dedicated workers (credentials.py).
SECRET_KIND = Kind("v1", "Secret", "secrets", namespaced=True)
CRD_KIND = Kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False)


class KubeError(Exception):
    """An API call failed; `temporary` says whether retrying can help."""

    def __init__(self, message: str, *, status: int | None, temporary: bool) -> None:
        super().__init__(message)
        self.status = status
        self.temporary = temporary


class NotFoundError(KubeError):
    pass


def _is_temporary(status: int, body: bytes = b"") -> bool:
    # A namespace being deleted refuses new objects with 403 until it is gone: retry, not give up.
    if status == 403 and b"being terminated" in body:
        return True
    return status >= 500 or status in (408, 409, 429)


def _replacing(live: Any, desired: Any) -> Any:
    """`desired` plus explicit nulls for every mapping key `live` has and `desired` lacks, at any
    depth (lists are replaced whole by a merge patch anyway)."""
    if not isinstance(live, dict) or not isinstance(desired, dict):
        return desired
    merged: dict[str, Any] = {key: None for key in live if key not in desired}
    for key, value in desired.items():
        merged[key] = _replacing(live.get(key), value)
    return merged


def _without(mapping: Any, keys: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in (mapping or {}).items() if k not in keys}


def _owned_part(obj: dict[str, Any]) -> dict[str, Any]:
    """What of an object the operator owns: everything but status and the server's metadata, minus
    the labels and annotations servers and controllers write."""
    meta = obj.get("metadata") or {}
    owned: dict[str, Any] = {
        "metadata": {
            "labels": _without(meta.get("labels"), SERVER_LABELS),
            "annotations": _without(meta.get("annotations"), SERVER_ANNOTATIONS),
        }
    }
    if obj.get("kind") in METADATA_ONLY:
        return owned
    owned.update({k: v for k, v in obj.items() if k not in ("metadata", "status")})
    template_meta = ((owned.get("spec") or {}).get("template") or {}).get("metadata")
    if isinstance(template_meta, dict) and template_meta.get("annotations"):
        spec = dict(owned["spec"])
        template = dict(spec["template"])
        template["metadata"] = {
            **template_meta,
            "annotations": _without(template_meta["annotations"], TEMPLATE_ANNOTATIONS),
        }
        spec["template"] = template
        owned["spec"] = spec
    return owned


def fingerprint(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(_owned_part(obj), sort_keys=True).encode()).hexdigest()[:32]


def _repair_patch(live: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """A merge patch making the operator's part of `live` exactly `desired`'s."""
    # The server's and controllers' labels and annotations are in neither, so they are kept.
    patch: dict[str, Any] = _replacing(_owned_part(live), _owned_part(desired))
    return patch


def _holds(live: Any, desired: Any) -> bool:
    """Whether `live` already has every field of `desired` (fields the API server adds, such as
    defaults and status, are ignored): the test for drift."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(_holds(live.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(_holds(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


class KubeClient:
    def __init__(self, api: kubernetes.client.ApiClient, *, timeout: float = 15.0) -> None:
        self._api = api
        self._timeout = timeout
        # (kind, namespace, name) -> fingerprint of the object as this process last wrote it.
        self._written: dict[tuple[str, str, str], str] = {}

    @classmethod
    def connect(cls, url: str | None) -> KubeClient:
        if url:
            configuration = kubernetes.client.Configuration()
            configuration.host = url
            return cls(kubernetes.client.ApiClient(configuration))
        try:
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
        return cls(kubernetes.client.ApiClient())

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            _, url, headers, payload, _ = self._api.param_serialize(
                method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
            )
            response = self._api.call_api(
                method, url, header_params=headers, body=payload, _request_timeout=self._timeout
            )
            data = response.read()  # type: ignore[no-untyped-call]
        except kubernetes.client.ApiException as exc:
            raise KubeError(f"{method} {path}: {exc.reason}", status=None, temporary=True) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(f"{method} {path}: {exc}", status=None, temporary=True) from exc
        status = int(response.status)
        if status >= 300:
            message = f"{method} {path}: {status} {response.reason}: {(data or b'')[:300]!r}"
            if status == 404:
                raise NotFoundError(message, status=404, temporary=False)
            raise KubeError(message, status=status, temporary=_is_temporary(status, data or b""))
        return json.loads(data) if data else None

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        return await asyncio.to_thread(self._call, method, path, body, content_type)

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"{kind.collection(namespace)}/{name}")
        return result

    async def list(self, kind: Kind, namespace: str | None = None) -> list[dict[str, Any]]:
        result = await self.request("GET", kind.collection(namespace))
        return list((result or {}).get("items") or [])

    async def create(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", kind.collection(obj["metadata"].get("namespace")), obj
        )
        return result

    async def patch(
        self,
        kind: Kind,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
        subresource: str = "",
    ) -> dict[str, Any]:
        path = f"{kind.collection(namespace)}/{name}" + (f"/{subresource}" if subresource else "")
        result: dict[str, Any] = await self.request("PATCH", path, patch, MERGE_PATCH)
        return result

    async def delete(self, kind: Kind, name: str, namespace: str | None = None) -> bool:
        """Delete; False if it was already gone."""
        self._written.pop((kind.kind, namespace or "", name), None)
        try:
            await self.request("DELETE", f"{kind.collection(namespace)}/{name}")
        except NotFoundError:
            return False
        return True

    async def write_secret(self, obj: dict[str, Any]) -> None:
        """Create the Secret, or replace its data and labels: never reads it (the operator may
        create, patch and delete Secrets, not get or list them)."""
        meta = obj["metadata"]
        try:
            await self.create(SECRET_KIND, obj)
            return
        except KubeError as exc:
            if exc.status != 409:
                raise
        patch = [
            {"op": "add", "path": "/metadata/labels", "value": meta["labels"]},
            {"op": "add", "path": "/data", "value": obj["data"]},
        ]
        path = f"{SECRET_KIND.collection(meta['namespace'])}/{meta['name']}"
        await self.request("PATCH", path, patch, JSON_PATCH)

    async def delete_secret(self, name: str, namespace: str) -> bool:
        return await self.delete(SECRET_KIND, name, namespace)

    async def apply(self, obj: dict[str, Any]) -> str:
        """Create the object or merge-patch it to the desired state. Returns created; unchanged (the
        live object is exactly as this operator last wrote it, for the same desired state: nothing
        is written); patched (a new desired state); or restored (the desired state is the one
        applied last, yet the live object changed: someone else edited, added or removed fields).

        The desired state is remembered in an annotation (what `kubectl apply` does). The object as
        written is remembered in memory at once and in the fingerprint annotation at the next
        apply that finds it unchanged (so creating a tenant costs no extra write); an object whose
        write this process has not seen and that carries no fingerprint is rewritten once."""
        kind = KINDS[obj["kind"]]
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace") or "", meta["name"])
        desired = json.loads(json.dumps(obj))
        desired["metadata"].setdefault("annotations", {})[LAST_APPLIED] = json.dumps(obj, sort_keys=True)
        try:
            live = await self.get(kind, meta["name"], meta.get("namespace"))
        except NotFoundError:
            try:
                written = await self.create(kind, desired)
            except KubeError as exc:
                if exc.status != 409:
                    raise
            else:
                self._written[key] = fingerprint(written or desired)
                return "created"
            live = await self.get(kind, meta["name"], meta.get("namespace"))
        annotations = (live.get("metadata") or {}).get("annotations") or {}
        same_desired = annotations.get(LAST_APPLIED) == desired["metadata"]["annotations"][LAST_APPLIED]
        known = self._written.get(key) or annotations.get(FINGERPRINT)
        current = fingerprint(live)
        if same_desired and known == current and _holds(live, desired):
            if annotations.get(FINGERPRINT) != current:
                # Only an annotation the fingerprint ignores: the object does not change.
                stamp = {"metadata": {"annotations": {FINGERPRINT: current}}}
                await self.patch(kind, meta["name"], stamp, meta.get("namespace"))
            self._written[key] = current
            return "unchanged"
        written = await self.patch(kind, meta["name"], _repair_patch(live, desired), meta.get("namespace"))
        self._written[key] = fingerprint(written or desired)
        # Without a record of the last write a difference is not provably someone else's: it is
        # counted like a new desired state.
        return "restored" if same_desired and known else "patched"
