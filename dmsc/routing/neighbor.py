"""Neighbor (adjacency) state machine on a point-to-point link, written as a table.

    DOWN --hello--> INIT --hello listing us--> FULL
    any --dead interval / link down--> DOWN;  FULL --hello not listing us--> INIT

A neighbor reaches FULL (the 3-way handshake is complete) when its hello lists our node id:
both sides then know the link works in both directions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class State(enum.Enum):
    DOWN = "down"
    INIT = "init"
    FULL = "full"


class Event(enum.Enum):
    HELLO_ONE_WAY = "hello (we are not listed)"
    HELLO_TWO_WAY = "hello (we are listed)"
    DEAD_TIMER = "dead interval expired"
    LINK_DOWN = "link down"


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.DOWN, Event.HELLO_ONE_WAY): State.INIT,
    (State.DOWN, Event.HELLO_TWO_WAY): State.FULL,
    (State.INIT, Event.HELLO_ONE_WAY): State.INIT,
    (State.INIT, Event.HELLO_TWO_WAY): State.FULL,
    (State.FULL, Event.HELLO_TWO_WAY): State.FULL,
    (State.FULL, Event.HELLO_ONE_WAY): State.INIT,
}
for _state in State:
    TRANSITIONS[(_state, Event.DEAD_TIMER)] = State.DOWN
    TRANSITIONS[(_state, Event.LINK_DOWN)] = State.DOWN


@dataclass
class Neighbor:
    """One neighbor heard on one interface, with what flooding still owes it."""

    node_id: str
    interface: str
    state: State = State.DOWN
    dead_at: float = 0.0
    hardware_address: bytes = b""  # its MAC on this link, from its hellos
    #: originator -> (sequence, is purge, time of next retransmission) of LSAs sent, not acked
    retransmit: dict[str, tuple[int, bool, float]] = field(default_factory=dict)

    def handle(self, event: Event) -> tuple[State, State]:
        """Apply ``event``; return (old, new) state."""
        old = self.state
        self.state = TRANSITIONS[(old, event)]
        if self.state is not State.FULL:
            self.retransmit.clear()  # flooding happens over FULL adjacencies only
        return old, self.state

    @property
    def is_full(self) -> bool:
        return self.state is State.FULL
