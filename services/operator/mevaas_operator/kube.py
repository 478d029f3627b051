"""A small Kubernetes client for the objects the tenant chart renders: create-or-PATCH (JSON merge
patch; no server-side apply, so it also works against API emulators), list, delete, and status.
The official client is synchronous, so every call runs in a worker thread."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3

LAST_APPLIED = "mevaas.io/last-applied"
MERGE_PATCH = "application/merge-patch+json"


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


class KubeError(Exception):
    """An API call failed; `temporary` says whether retrying can help."""

    def __init__(self, message: str, *, status: int | None, temporary: bool) -> None:
        super().__init__(message)
        self.status = status
        self.temporary = temporary


class NotFoundError(KubeError):
    pass


def _is_temporary(status: int) -> bool:
    return status >= 500 or status in (408, 409, 429)


def _removed_keys(old: Any, new: Any) -> Any:
    """`new` plus explicit nulls for mapping keys `old` had and `new` dropped (merge-patch deletes)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    merged: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        merged[key] = _removed_keys(old.get(key), value)
    return merged


class KubeClient:
    def __init__(self, api: kubernetes.client.ApiClient, *, timeout: float = 15.0) -> None:
        self._api = api
        self._timeout = timeout

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
            raise KubeError(message, status=status, temporary=_is_temporary(status))
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
        try:
            await self.request("DELETE", f"{kind.collection(namespace)}/{name}")
        except NotFoundError:
            return False
        return True

    async def apply(self, obj: dict[str, Any]) -> str:
        """Create the object or merge-patch it to the desired state; returns created/patched.

        The desired state is remembered in an annotation so that fields dropped from the desired
        state are removed on the next apply (what `kubectl apply` does)."""
        kind = KINDS[obj["kind"]]
        meta = obj["metadata"]
        desired = json.loads(json.dumps(obj))
        desired["metadata"].setdefault("annotations", {})[LAST_APPLIED] = json.dumps(obj, sort_keys=True)
        try:
            live = await self.get(kind, meta["name"], meta.get("namespace"))
        except NotFoundError:
            try:
                await self.create(kind, desired)
            except KubeError as exc:
                if exc.status != 409:
                    raise
            else:
                return "created"
            live = await self.get(kind, meta["name"], meta.get("namespace"))
        previous_raw = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
        previous = json.loads(previous_raw) if previous_raw else {}
        await self.patch(kind, meta["name"], _removed_keys(previous, desired), meta.get("namespace"))
        return "patched"
