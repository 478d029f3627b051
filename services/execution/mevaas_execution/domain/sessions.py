"""Session states and which transitions each request allows (pure)."""

from __future__ import annotations

from mevaas.common.v1 import common_pb2

STARTING = "starting"
RUNNING = "running"
PAUSED = "paused"
STOPPING = "stopping"
STOPPED = "stopped"
FAILED = "failed"

LIVE_STATES = (STARTING, RUNNING, PAUSED, STOPPING)
FINAL_STATES = (STOPPED, FAILED)

STATE_TO_PROTO: dict[str, common_pb2.ExecutionState.ValueType] = {
    STARTING: common_pb2.EXECUTION_STATE_STARTING,
    RUNNING: common_pb2.EXECUTION_STATE_RUNNING,
    PAUSED: common_pb2.EXECUTION_STATE_PAUSED,
    STOPPING: common_pb2.EXECUTION_STATE_STOPPING,
    STOPPED: common_pb2.EXECUTION_STATE_STOPPED,
    FAILED: common_pb2.EXECUTION_STATE_FAILED,
}
PROTO_TO_STATE = {v: k for k, v in STATE_TO_PROTO.items()}


class TransitionRefused(Exception):
    """The session's current state does not allow the request."""


def pause_target(state: str) -> str:
    """Pausing is allowed from RUNNING (and is a no-op when already PAUSED)."""
    if state in (RUNNING, PAUSED, STARTING):
        return PAUSED
    raise TransitionRefused(f"cannot pause a {state} session")


def resume_target(state: str) -> str:
    if state in (PAUSED, RUNNING):
        return RUNNING
    raise TransitionRefused(f"cannot resume a {state} session")


def stop_target(state: str) -> str:
    """Stopping is idempotent; a FAILED session stays FAILED."""
    return state if state in FINAL_STATES else STOPPED


def accepts_decisions(state: str) -> bool:
    """Only a RUNNING session executes; decisions for any other state are dropped."""
    return state == RUNNING
