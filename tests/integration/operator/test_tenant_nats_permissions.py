"""A dedicated tenant's NATS identity, with the permissions charts/tenant renders for it, on a real
nats-server: it sees its own subjects (core and through its own JetStream consumer) and cannot
subscribe to another tenant's, filter a consumer on them, or pull from the platform's consumers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats
import pytest
from nats.js.api import ConsumerConfig

from mevaas_core.bus import Bus
from tests.fixtures.k8s import CHARTS, render_chart
from tests.fixtures.tls import nats_with_config

pytestmark = pytest.mark.integration


def rendered_permissions() -> tuple[str, str, dict[str, object]]:
    objs = render_chart(
        "tenant", [CHARTS / "tenant" / "ci" / "enterprise-dedicated-values.yaml"], namespace="tenant-initech"
    )
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nats-permissions"]
    return cm["data"]["user"], cm["data"]["inboxPrefix"], json.loads(cm["data"]["permissions.json"])


async def test_a_tenant_identity_sees_only_its_tenant(tmp_path: Path) -> None:
    user, inbox, permissions = rendered_permissions()
    assert user == "tenant-initech"
    config = (
        "authorization { users = [\n"
        + (
            f'  {{user: "platform", password: "p"}},\n'
            f'  {{user: "{user}", password: "t", permissions: {json.dumps(permissions)}}}\n'
        )
        + "] }"
    )
    async with nats_with_config(tmp_path, config) as port:
        bus = await Bus.connect(f"nats://platform:p@127.0.0.1:{port}", "platform")
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        tenant = await nats.connect(
            f"nats://{user}:t@127.0.0.1:{port}",
            inbox_prefix=inbox,
            error_cb=on_error,
            max_reconnect_attempts=0,
        )
        try:
            await bus.ensure_streams()
            js = bus.nc.jetstream()
            # The platform's own durable on every opportunity (what shared workers consume).
            await js.add_consumer("OPP", ConsumerConfig(durable_name="platform-opp", filter_subject="opp.>"))

            own = await tenant.subscribe("opp.initech.>")
            other = await tenant.subscribe("opp.acme.>")
            await tenant.flush()
            await js.publish("opp.initech.s1", b"mine")
            await js.publish("opp.acme.s1", b"theirs")
            assert (await own.next_msg(timeout=5)).data == b"mine"
            with pytest.raises(nats.errors.TimeoutError):
                await other.next_msg(timeout=1)
            assert any(
                "opp.acme.>" in str(e) and "permissions violation" in str(e).lower() for e in errors
            ), errors

            tjs = tenant.jetstream()
            mine = await tjs.pull_subscribe("opp.initech.>", durable="execution-initech", stream="OPP")
            (msg,) = await mine.fetch(1, timeout=5)
            assert msg.data == b"mine"
            await msg.ack_sync()

            with pytest.raises(
                (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.Error)
            ):
                await tjs.pull_subscribe("opp.acme.>", durable="execution-initech2", stream="OPP")
            # Pulling from the platform's consumer (every tenant's opportunities) is refused.
            errors.clear()
            inbox_sub = await tenant.subscribe(f"{inbox}.steal")
            await tenant.publish(
                "$JS.API.CONSUMER.MSG.NEXT.OPP.platform-opp", b'{"batch": 5}', reply=f"{inbox}.steal"
            )
            await tenant.flush()
            with pytest.raises(nats.errors.TimeoutError):
                await inbox_sub.next_msg(timeout=1)
            await asyncio.sleep(0.2)
            assert any("permissions violation for publish" in str(e).lower() for e in errors), errors
        finally:
            await tenant.close()
            await bus.close()
