"""A job's lifecycle inside the dispatcher that claimed it: the states, the legal transitions, one pure function.

In the manner of distributed's ``worker_state_machine.py``: the dispatcher's loops (claim, watch, heartbeat,
the job's own task) do the I/O and feed what they saw here as an :class:`Event`; :func:`step` answers the next
:class:`Phase` and the :class:`Action` s the dispatcher must take, and nothing else decides them. No Redis, no
Dask, no asyncio: every legal and illegal transition is tested as plain data (``tests/test_lifecycle.py``).

The phases::

    queued ─claimed→ claimed ─started→ running ─graph_done / graph_failed→ finishing ─written→ completed | failed
                        │                 │                                    │
                        ├─ cancel_seen ───┴→ cancelled (stop the tasks)        ├─ cancel_seen: stays finishing
                        └─ lease_lost / released ─→ lost                       ├─ found_cancelled → cancelled
                                                                               └─ lease_lost → lost (no stop)

Why ``finishing`` ignores a cancel: once the graph has finished, its final writes (publishing, the terminal
transition, the rollback of a refused one, deleting intermediates) are fenced by Redis itself; a cancel from the
API makes the terminal write fail (the stored ``cancelled`` stands) and the rollback then runs to its end. Only
``claimed`` and ``running`` ever emit :attr:`Action.STOP_TASK`, so a cancel (or a lost lease) can never interrupt
a rollback half-way: that race is impossible by construction, not by a flag checked in one loop of four.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "TABLE",
    "TERMINAL_PHASES",
    "Action",
    "Event",
    "IllegalTransitionError",
    "JobLifecycle",
    "Phase",
    "Step",
    "step",
]


class Phase(str, Enum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    RUNNING = "running"
    FINISHING = "finishing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"


class Event(str, Enum):
    CLAIMED = "claimed"  # the claim script gave this dispatcher a lease
    STARTED = "started"  # the job's graph was bound and submitted to Dask
    GRAPH_DONE = "graph_done"  # every node finished: publish, then complete
    GRAPH_FAILED = "graph_failed"  # a node (or binding the payload) failed: write the failure
    CANCEL_SEEN = "cancel_seen"  # the watch loop read status ``cancelled`` (DELETE /jobs/{id})
    FOUND_CANCELLED = "found_cancelled"  # a fenced write was refused: the job was cancelled meanwhile
    LEASE_LOST = "lease_lost"  # a fenced write, the heartbeat or the watch loop saw another holder
    RELEASED = "released"  # the dispatcher stops, or the record is gone: leave the job to recovery
    COMPLETED_WRITTEN = "completed_written"  # the terminal transition to completed went through
    FAILED_WRITTEN = "failed_written"  # the terminal transition to failed went through


class Action(str, Enum):
    STOP_TASK = "stop_task"  # cancel the job's asyncio task, and so its Dask tasks
    ABANDON_PUBLISH = "abandon_publish"  # the publisher stops at its next write


TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED, Phase.LOST})


@dataclass(frozen=True, slots=True)
class Step:
    after: Phase
    actions: tuple[Action, ...] = ()


_STOP = (Action.STOP_TASK, Action.ABANDON_PUBLISH)
_LIVE = (Phase.CLAIMED, Phase.RUNNING)

#: Every legal (phase, event) pair; a pair that is not here is illegal.
TABLE: dict[tuple[Phase, Event], Step] = {
    (Phase.QUEUED, Event.CLAIMED): Step(Phase.CLAIMED),
    (Phase.CLAIMED, Event.STARTED): Step(Phase.RUNNING),
    (Phase.RUNNING, Event.GRAPH_DONE): Step(Phase.FINISHING),
    **{(p, Event.GRAPH_FAILED): Step(Phase.FINISHING) for p in _LIVE},
    **{(p, Event.CANCEL_SEEN): Step(Phase.CANCELLED, (Action.STOP_TASK,)) for p in _LIVE},
    **{(p, Event.LEASE_LOST): Step(Phase.LOST, _STOP) for p in _LIVE},
    **{(p, Event.RELEASED): Step(Phase.LOST) for p in (*_LIVE, Phase.FINISHING)},
    # Finishing: the final writes are fenced by Redis; nothing stops them half-way.
    **{(p, Event.FOUND_CANCELLED): Step(Phase.CANCELLED) for p in (*_LIVE, Phase.FINISHING)},
    (Phase.FINISHING, Event.CANCEL_SEEN): Step(Phase.FINISHING),
    (Phase.FINISHING, Event.GRAPH_FAILED): Step(Phase.FINISHING),  # publishing failed: write that instead
    (Phase.FINISHING, Event.LEASE_LOST): Step(Phase.LOST, (Action.ABANDON_PUBLISH,)),
    (Phase.FINISHING, Event.COMPLETED_WRITTEN): Step(Phase.COMPLETED),
    (Phase.FINISHING, Event.FAILED_WRITTEN): Step(Phase.FAILED),
    # Late news of an ended job (the watch loop and heartbeat read Redis on their own clocks): nothing to do.
    **{(p, e): Step(p) for p in TERMINAL_PHASES for e in (Event.CANCEL_SEEN, Event.LEASE_LOST, Event.RELEASED)},
    # A stopped job's own task learns it late (it was between two awaits): it stays stopped, and its terminal
    # write (if it tries one) is refused by Redis, so the stored status stands.
    **{(p, e): Step(p) for p in (Phase.CANCELLED, Phase.LOST)
       for e in (Event.STARTED, Event.GRAPH_DONE, Event.GRAPH_FAILED, Event.FOUND_CANCELLED)},
}


class IllegalTransitionError(RuntimeError):
    """An event that cannot happen in the job's phase: a bug in the dispatcher, never a user's error."""

    def __init__(self, phase: Phase, event: Event) -> None:
        legal = sorted(e.value for (p, e) in TABLE if p is phase)
        super().__init__(f"event {event.value!r} is illegal in phase {phase.value!r} "
                         f"(legal there: {', '.join(legal) or 'none'})")
        self.phase, self.event = phase, event


def step(phase: Phase, event: Event) -> Step:
    """The next phase and the actions to take: pure, total over :data:`TABLE`, raising outside it."""
    try:
        return TABLE[(phase, event)]
    except KeyError:
        raise IllegalTransitionError(phase, event) from None


@dataclass(frozen=True, slots=True)
class Transition:
    at: float
    before: Phase
    event: Event
    after: Phase
    note: str = ""


@dataclass(slots=True)
class JobLifecycle:
    """One job's phase and the short history of how it got there (for logs and diagnostics)."""

    phase: Phase = Phase.QUEUED
    history: deque[Transition] = field(default_factory=lambda: deque(maxlen=16))

    def apply(self, event: Event, note: str = "", *, clock: float | None = None) -> tuple[Action, ...]:
        result = step(self.phase, event)
        at = time.time() if clock is None else clock
        self.history.append(Transition(at, self.phase, event, result.after, note))
        self.phase = result.after
        return result.actions

    @property
    def ended(self) -> bool:
        return self.phase in TERMINAL_PHASES

    def describe(self) -> list[str]:
        """``"claimed -claimed-> ..."`` lines, oldest first, for a log line or ``/health/diagnostics``."""
        return [f"{t.before.value} -{t.event.value}-> {t.after.value}" + (f" ({t.note})" if t.note else "")
                for t in self.history]
