"""The supervisor's backoff: a thing that keeps failing to restart waits 1, 2, 4 ... up to 30 s;
one that stays up a minute starts again from 1 s."""

from __future__ import annotations

from mevaas_local.supervisor import MAX_BACKOFF, Supervisor


async def test_backoff_doubles_while_restarts_fail_and_resets_once_stable() -> None:
    now = [0.0]
    state = {"alive": True, "fail": True, "attempts": 0}

    async def restart() -> None:
        state["attempts"] += 1
        if state["fail"]:
            raise RuntimeError("port taken")
        state["alive"] = True

    supervisor = Supervisor(clock=lambda: now[0])
    supervisor.add("risk", lambda: bool(state["alive"]), restart)
    state["alive"] = False
    await supervisor.tick()  # noticed: first try in 1 s
    assert state["attempts"] == 0 and "risk is down" in supervisor.events[-1]
    waits = []
    for _ in range(7):
        (item,) = supervisor._items
        now[0] = item.next_try
        before = now[0]
        await supervisor.tick()
        waits.append(item.next_try - before)
    assert waits == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0] and MAX_BACKOFF == 30.0
    state["fail"] = False
    now[0] = item.next_try
    await supervisor.tick()
    assert state["alive"] and supervisor.status() == "supervisor: all up; restarted: risk x1"
    now[0] += 61
    await supervisor.tick()
    assert item.backoff == 1.0
