"""A supervised local fleet (issue 10, item 6): kill -9 of the embedded NATS and PostgreSQL (which
leaves PostgreSQL's postmaster.pid behind) and the supervisor of `mevaas up` brings each back on
the same port and data, says so, and a client reconnects."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from pathlib import Path

import asyncpg
import nats
import pytest

from mevaas_local.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from mevaas_local.supervisor import Supervisor
from tests.fixtures.servers import HARNESS_USER, platform_nats_users

pytestmark = pytest.mark.integration


async def test_killed_embedded_servers_come_back() -> None:
    # Not under pytest's tmp dir: other pytest runs reset its permissions (PostgreSQL's user
    # could not traverse it).
    tmp_path = Path(tempfile.mkdtemp(prefix="mevaas-supervisor-"))
    nats_server = EmbeddedNats(tmp_path / "nats", port=free_port(), users=platform_nats_users())
    postgres = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    await nats_server.start()
    await postgres.start()
    supervisor = Supervisor()
    supervisor.add("nats", lambda: nats_server.running, nats_server.start)
    supervisor.add("postgresql", lambda: postgres.running, postgres.start)
    await supervisor.start(interval=0.1)
    try:
        nats_port, pg_port, pg_dsn = nats_server.port, postgres.port, postgres.dsn
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
        await conn.close()
        for server in (nats_server, postgres):
            assert server.pid is not None
            os.kill(server.pid, signal.SIGKILL)
        assert (postgres.data_dir / "pgdata" / "postmaster.pid").exists()  # the stale lock
        for _ in range(300):
            if supervisor.status() == "supervisor: all up; restarted: nats x1, postgresql x1":
                break
            await asyncio.sleep(0.1)
        assert supervisor.status() == "supervisor: all up; restarted: nats x1, postgresql x1"
        assert any("nats is down" in e for e in supervisor.events)
        assert (nats_server.port, postgres.port) == (nats_port, pg_port)
        nc = await nats.connect(nats_server.url_for(HARNESS_USER))
        assert (await nc.jetstream().account_info()).streams >= 0
        await nc.close()
        conn = await asyncpg.connect(pg_dsn)
        assert await conn.fetchval("SELECT v FROM kept") == 7
        await conn.close()
    finally:
        await supervisor.stop()
        await nats_server.stop()
        await postgres.stop()
        shutil.rmtree(tmp_path, ignore_errors=True)
