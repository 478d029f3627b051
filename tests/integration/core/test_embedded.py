"""The embedded servers: start, data kept across a restart, nothing left running after stop,
and nothing left running when their parent process is killed outright."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import nats
import pytest

from mevaas_local.embedded import EmbeddedNats, EmbeddedPostgres, EmbeddedServerError
from mevaas_local.embedded.processes import _descendants, _pid_alive

pytestmark = pytest.mark.integration


async def gone(pids: list[int], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while any(_pid_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_nats_keeps_its_streams_across_a_restart_and_stops_cleanly(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    async with server:
        assert server.running and server.url.startswith("nats://127.0.0.1:")
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep.>"])
        await js.publish("keep.one", b"payload")
        await nc.close()
        pid = server.pid
    assert pid is not None and not server.running and await gone([pid])

    async with server:  # same data dir, possibly another port
        nc = await nats.connect(server.url)
        stored = await nc.jetstream().get_msg("KEEP", 1)
        assert stored.data == b"payload"
        await nc.close()


async def test_postgres_keeps_its_data_across_a_restart_and_stops_cleanly(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", durable=False)
    await server.start()
    try:
        conn = await asyncpg.connect(server.dsn)
        await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
        await conn.close()
        assert server.pid is not None
        family = [server.pid, *_descendants(server.pid)]
        assert len(family) > 1  # the postmaster and its workers
    finally:
        await server.stop()
    assert await gone(family)

    with pytest.raises(EmbeddedServerError, match="not started"):
        _ = server.dsn
    async with server:
        conn = await asyncpg.connect(server.dsn)
        assert await conn.fetchval("SELECT x FROM kept") == 42
        await conn.close()
        # Passwords are checked: the superuser's is not optional.
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(server.dsn_for("postgres", password="wrong"))


CHILD = """
import asyncio, sys
from mevaas_local.embedded import EmbeddedNats, EmbeddedPostgres

async def main() -> None:
    nats = EmbeddedNats(sys.argv[1] + "/nats")
    pg = EmbeddedPostgres(sys.argv[1] + "/pg", durable=False)
    await nats.start()
    await pg.start()
    print(nats.pid, pg.pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_servers_die_with_a_parent_killed_outright(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(parent.stdout.readline), 60)
        nats_pid, pg_pid = (int(p) for p in line.split())
        family = [nats_pid, pg_pid, *_descendants(pg_pid)]
        assert all(_pid_alive(p) for p in family)
        os.kill(parent.pid, signal.SIGKILL)  # no cleanup code runs in the parent
        parent.wait()
        assert await gone(family, within=15)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


async def test_a_server_left_over_on_the_same_data_is_replaced(tmp_path: Path) -> None:
    first = EmbeddedNats(tmp_path / "nats")
    await first.start()
    try:
        leftover = first.pid
        second = EmbeddedNats(tmp_path / "nats")  # as after a crash that left the old one running
        async with second:
            assert leftover is not None and not _pid_alive(leftover)
            nc = await nats.connect(second.url)
            await nc.close()
    finally:
        await first.stop()
