"""Site staff changing a node host's state (the admin's actions): drain, disable, make
ready. Each is a compare-and-set from the states it may leave, so a host the health sweep
marked unreachable meanwhile is left to the sweep.

- draining: nothing new is placed there; the sweep removes its idle nodes (the scale step
  places replacements elsewhere);
- disabled: nothing new is placed there; its nodes are left as they are, and the sweep
  stops looking at it;
- ready: placement uses it again.

An unreachable host is the sweep's: it becomes ready by itself when its engine answers,
and its nodes are written off after the grace (HANGAR_HOST_GRACE_SECONDS).
"""

from __future__ import annotations

from dataclasses import dataclass

from compute.models import HostState, NodeHost

H = HostState


@dataclass(frozen=True)
class Move:
    verb: str
    target: HostState
    sources: tuple[HostState, ...]
    says: str  # what it does, for the confirmation page


MOVES = {
    "drain": Move(
        "Drain",
        H.DRAINING,
        (H.READY, H.DISABLED),
        "Nothing new is placed on a draining host; its idle nodes are removed by the next "
        "sweeps and clusters replace them on other hosts. Busy nodes finish their jobs first.",
    ),
    "disable": Move(
        "Disable",
        H.DISABLED,
        (H.READY, H.DRAINING),
        "Nothing new is placed on a disabled host and its health is no longer checked; the "
        "nodes on it are left as they are.",
    ),
    "make_ready": Move(
        "Make ready",
        H.READY,
        (H.DRAINING, H.DISABLED),
        "Placement uses the host again; the sweep checks its engine (an engine that does "
        "not answer is marked unreachable within seconds).",
    ),
}


def refusal(host: NodeHost, move: Move) -> str | None:
    """Why `move` does not apply to `host` ("it is already draining"), or None."""
    if host.state == move.target:
        return f"it is already {host.get_state_display().lower()}"
    if host.state == H.UNREACHABLE:
        return (
            "it is unreachable: it becomes ready by itself when its engine answers "
            "(its nodes are written off after the grace)"
        )
    if host.state not in move.sources:
        return f"it is {host.get_state_display().lower()}"
    return None


def set_host_state(host: NodeHost, action: str) -> str | None:
    """Apply `action` to `host`: None when done, else why not (the move does not apply, or
    the host's state changed meanwhile)."""
    move = MOVES[action]
    why = refusal(host, move)
    if why:
        return why
    moved = NodeHost.objects.filter(pk=host.pk, state__in=move.sources).update(state=move.target)
    if not moved:
        host.refresh_from_db(fields=["state"])
        return refusal(host, move) or "it changed meanwhile; try again"
    host.state = move.target
    return None
