"""The platform chart's lifecycle hooks, run from the operator's image:

- `apply-crds DIR` (pre-upgrade): Helm installs `crds/` once and never upgrades it, so the hook
  applies every CRD of the new chart server-side (field manager `mevaas-chart`, conflicts forced)
  before the new operator, which may write the new fields, starts.
- `uninstall` (pre-delete): deletes every Tenant while the operator still runs, so its finalizer
  tears each namespace down; a Tenant still there after the timeout (operator gone or stuck) is
  torn down here: its namespace deleted if the operator created it, then the finalizer removed, so
  no Tenant is left stranded on a finalizer nobody serves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mevaas_operator.config import FINALIZER, namespace_for
from mevaas_operator.kube import CRD_KIND, KINDS, TENANT_KIND, KubeClient, KubeError, NotFoundError
from mevaas_operator.render import owned

log = logging.getLogger(__name__)

APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "mevaas-chart"


def load_crds(directory: Path) -> list[dict[str, Any]]:
    crds: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                if doc.get("kind") != "CustomResourceDefinition":
                    raise ValueError(f"{path}: not a CustomResourceDefinition ({doc.get('kind')})")
                crds.append(doc)
    if not crds:
        raise ValueError(f"no CRDs in {directory}")
    return crds


async def apply_crds(kube: KubeClient, crds: list[dict[str, Any]]) -> list[str]:
    """Server-side apply of each CRD; returns `<name>: created|applied`."""
    done: list[str] = []
    for crd in crds:
        name = crd["metadata"]["name"]
        try:
            await kube.get(CRD_KIND, name)
        except NotFoundError:
            # A real server creates on apply too; a plain create also works on API emulators.
            await kube.create(CRD_KIND, crd)
            done.append(f"{name}: created")
            continue
        path = f"{CRD_KIND.collection(None)}/{name}?fieldManager={FIELD_MANAGER}&force=true"
        await kube.request("PATCH", path, crd, APPLY_PATCH)
        done.append(f"{name}: applied")
    return done


@dataclass
class Uninstalled:
    deleted: list[str] = field(default_factory=list)  # removed by the operator's finalizer
    forced: list[str] = field(default_factory=list)  # torn down here after the timeout


async def _tenants(kube: KubeClient) -> list[dict[str, Any]]:
    return await kube.list(TENANT_KIND)


async def _force(kube: KubeClient, tenant: dict[str, Any]) -> None:
    name = tenant["metadata"]["name"]
    try:
        namespace = await kube.get(KINDS["Namespace"], namespace_for(name))
    except NotFoundError:
        namespace = None
    if namespace is not None and owned(namespace, name):
        # Deleting the namespace deletes everything in it; one the operator did not create stays.
        await kube.delete(KINDS["Namespace"], namespace_for(name))
    finalizers = [f for f in tenant["metadata"].get("finalizers") or [] if f != FINALIZER]
    with contextlib.suppress(NotFoundError):  # the operator finished it meanwhile
        await kube.patch(TENANT_KIND, name, {"metadata": {"finalizers": finalizers or None}})


async def uninstall(kube: KubeClient, *, timeout: float, poll: float = 2.0) -> Uninstalled:
    """Delete every Tenant; wait up to `timeout` for the operator; tear down what is left."""
    result = Uninstalled()
    names = [t["metadata"]["name"] for t in await _tenants(kube)]
    for name in names:
        try:
            await kube.delete(TENANT_KIND, name)
        except NotFoundError:
            continue
    deadline = time.monotonic() + timeout
    left = await _tenants(kube)
    while left and time.monotonic() < deadline:
        await asyncio.sleep(poll)
        left = await _tenants(kube)
    remaining = {t["metadata"]["name"] for t in left}
    result.deleted = [n for n in names if n not in remaining]
    for tenant in left:
        log.warning(
            "tenant %s still there after %.0f s: deleting its namespace and removing the finalizer",
            tenant["metadata"]["name"],
            timeout,
        )
        await _force(kube, tenant)
        result.forced.append(tenant["metadata"]["name"])
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mevaas_operator.lifecycle")
    parser.add_argument("--kube-url", default=None, help="an unauthenticated API URL (tests, kubectl proxy)")
    commands = parser.add_subparsers(dest="command", required=True)
    crds = commands.add_parser("apply-crds", help="server-side apply every CRD in DIR")
    crds.add_argument("directory", type=Path)
    remove = commands.add_parser("uninstall", help="delete every Tenant; tear down what the operator leaves")
    remove.add_argument("--timeout", type=float, default=300.0)
    return parser


async def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    kube = KubeClient.connect(args.kube_url)
    try:
        if args.command == "apply-crds":
            for line in await apply_crds(kube, load_crds(args.directory)):
                print(line)
        else:
            done = await uninstall(kube, timeout=args.timeout)
            print(f"tenants removed by the operator: {', '.join(done.deleted) or 'none'}")
            print(f"tenants torn down by this job: {', '.join(done.forced) or 'none'}")
    except (KubeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        kube.close()
    return 0


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    raise SystemExit(asyncio.run(_main(sys.argv[1:])))


if __name__ == "__main__":
    main()
