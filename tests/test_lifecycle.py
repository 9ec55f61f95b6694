"""The job lifecycle as a pure state machine: every legal and every illegal transition, no Redis, no Dask."""

from __future__ import annotations

import itertools

import pytest

from scheduler.dispatch.lifecycle import (
    TERMINAL_PHASES,
    Action,
    Event,
    IllegalTransitionError,
    JobLifecycle,
    Phase,
    step,
)

P, E = Phase, Event
STOP, ABANDON = Action.STOP_TASK, Action.ABANDON_PUBLISH

#: The specification, written out by hand (not read from lifecycle.TABLE): (phase, event) -> (after, actions).
LEGAL: dict[tuple[Phase, Event], tuple[Phase, set[Action]]] = {
    (P.QUEUED, E.CLAIMED): (P.CLAIMED, set()),
    (P.CLAIMED, E.STARTED): (P.RUNNING, set()),
    (P.CLAIMED, E.GRAPH_FAILED): (P.FINISHING, set()),
    (P.CLAIMED, E.CANCEL_SEEN): (P.CANCELLED, {STOP}),
    (P.CLAIMED, E.FOUND_CANCELLED): (P.CANCELLED, set()),
    (P.CLAIMED, E.LEASE_LOST): (P.LOST, {STOP, ABANDON}),
    (P.CLAIMED, E.RELEASED): (P.LOST, set()),
    (P.RUNNING, E.GRAPH_DONE): (P.FINISHING, set()),
    (P.RUNNING, E.GRAPH_FAILED): (P.FINISHING, set()),
    (P.RUNNING, E.CANCEL_SEEN): (P.CANCELLED, {STOP}),
    (P.RUNNING, E.FOUND_CANCELLED): (P.CANCELLED, set()),
    (P.RUNNING, E.LEASE_LOST): (P.LOST, {STOP, ABANDON}),
    (P.RUNNING, E.RELEASED): (P.LOST, set()),
    # Finishing: nothing ever stops the task (its writes are fenced by Redis).
    (P.FINISHING, E.CANCEL_SEEN): (P.FINISHING, set()),
    (P.FINISHING, E.GRAPH_FAILED): (P.FINISHING, set()),
    (P.FINISHING, E.FOUND_CANCELLED): (P.CANCELLED, set()),
    (P.FINISHING, E.LEASE_LOST): (P.LOST, {ABANDON}),
    (P.FINISHING, E.RELEASED): (P.LOST, set()),
    (P.FINISHING, E.COMPLETED_WRITTEN): (P.COMPLETED, set()),
    (P.FINISHING, E.FAILED_WRITTEN): (P.FAILED, set()),
}
for _phase in (P.COMPLETED, P.FAILED, P.CANCELLED, P.LOST):  # late news of an ended job
    for _event in (E.CANCEL_SEEN, E.LEASE_LOST, E.RELEASED):
        LEGAL[(_phase, _event)] = (_phase, set())
for _phase in (P.CANCELLED, P.LOST):  # the stopped job's own task, a step behind
    for _event in (E.STARTED, E.GRAPH_DONE, E.GRAPH_FAILED, E.FOUND_CANCELLED):
        LEGAL[(_phase, _event)] = (_phase, set())

ALL_PAIRS = list(itertools.product(Phase, Event))


@pytest.mark.parametrize(("phase", "event"), [pair for pair in ALL_PAIRS if pair in LEGAL],
                         ids=lambda v: v.value)
def test_legal_transition(phase: Phase, event: Event) -> None:
    after, actions = LEGAL[(phase, event)]
    got = step(phase, event)
    assert got.after is after
    assert set(got.actions) == actions


@pytest.mark.parametrize(("phase", "event"), [pair for pair in ALL_PAIRS if pair not in LEGAL],
                         ids=lambda v: v.value)
def test_illegal_transition(phase: Phase, event: Event) -> None:
    with pytest.raises(IllegalTransitionError) as info:
        step(phase, event)
    assert info.value.phase is phase and info.value.event is event
    assert repr(event.value) in str(info.value) and repr(phase.value) in str(info.value)


def test_every_pair_is_decided() -> None:
    legal = sum(1 for pair in ALL_PAIRS if pair in LEGAL)
    assert legal == len(LEGAL) and 0 < legal < len(ALL_PAIRS)


def test_no_event_stops_a_finishing_or_ended_job() -> None:
    """The "cancel while finishing" race: only claimed and running jobs are ever stopped."""
    for phase, event in ALL_PAIRS:
        if phase in (P.CLAIMED, P.RUNNING):
            continue
        try:
            actions = step(phase, event).actions
        except IllegalTransitionError:
            continue
        assert Action.STOP_TASK not in actions, (phase, event)


def test_terminal_phases_never_leave() -> None:
    for phase, event in ALL_PAIRS:
        if phase in TERMINAL_PHASES and (phase, event) in LEGAL:
            assert step(phase, event).after is phase


def test_cancel_during_finishing_ends_cancelled_after_the_refused_write() -> None:
    life = JobLifecycle()
    for event in (E.CLAIMED, E.STARTED, E.GRAPH_DONE):
        assert life.apply(event, clock=1.0) == ()
    assert life.apply(E.CANCEL_SEEN, "DELETE /jobs/{id}", clock=2.0) == ()  # the rollback is not interrupted
    assert life.phase is P.FINISHING
    life.apply(E.FOUND_CANCELLED, clock=3.0)  # the terminal write was refused: the stored status stands
    assert life.phase is P.CANCELLED and life.ended
    assert life.describe() == [
        "queued -claimed-> claimed", "claimed -started-> running", "running -graph_done-> finishing",
        "finishing -cancel_seen-> finishing (DELETE /jobs/{id})", "finishing -found_cancelled-> cancelled"]


def test_history_is_short_and_an_illegal_event_changes_nothing() -> None:
    life = JobLifecycle()
    life.apply(E.CLAIMED)
    for _ in range(40):
        life.apply(E.RELEASED) if life.phase is not P.LOST else life.apply(E.CANCEL_SEEN)
    assert len(life.history) == 16
    with pytest.raises(IllegalTransitionError):
        life.apply(E.COMPLETED_WRITTEN)
    assert life.phase is P.LOST and len(life.history) == 16
