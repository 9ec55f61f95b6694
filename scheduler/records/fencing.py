"""Fenced job ownership: a dispatcher's lease on a job, the error of a lost one, and guarded publishing.

A claim gives the dispatcher a :class:`Lease`, ``(owner, attempt)``; the store's scripts refuse any write
made with a lease that no longer matches the job (see :mod:`scheduler.records.jobs_lua`), raising
:class:`JobLostError`. Publishing a job's outputs (assets, clip-version updates, chained jobs) is many writes
to other records, which those scripts cannot fence one by one, so :class:`PublishGuard` only lets them start
while the lease is *known* to hold: it confirms the lease in Redis (which also refreshes the dispatcher's
heartbeat key) and trusts that for ``ttl - margin`` seconds of its own monotonic clock. Recovery cannot
re-queue the job before the heartbeat key expires, ``ttl`` seconds after Redis processed the confirmation,
which is after the dispatcher's clock started counting; so every guarded write starts while no other
dispatcher can hold the job.

Asset records close that window entirely: each is written by a script that checks the lease in the same
atomic step (``JobStore.fenced_write``), and its id is derived from the job, the attempt and the path, so a
write retried after a lost reply overwrites its record instead of adding one. What remains, for the other
writes (a clip-version entry, a source's ``media_info``, a chained job): one that starts inside the window
but reaches Redis more than ``margin`` seconds later (a stalled process or network) could land after
another dispatcher re-claimed the job. The final transition is fenced and refuses such a stale owner; the
dispatcher then deletes the asset records it registered while it held the job and cancels the jobs it
chained (see ``scheduler.dispatch.publishing``). A clip-version entry it appended stays (entries are kept once per
job id, so the new run's is not added).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from scheduler.errors import InvalidTransitionError

__all__ = ["JobLostError", "Lease", "PublishGuard"]


@dataclass(frozen=True, slots=True)
class Lease:
    """A dispatcher's hold on a job: its owner id and the attempt number its claim gave the job."""

    job_id: str
    owner: str
    attempt: int


class JobLostError(RuntimeError):
    """A fenced write was refused: the job is no longer held with this lease (re-queued, re-claimed, or its
    owner is still alive, for recovery). ``holder`` and ``attempt`` are what the job held instead."""

    def __init__(self, lease: Lease, *, holder: str = "", attempt: str = "", reason: str = "") -> None:
        self.lease, self.holder, self.attempt = lease, holder, attempt
        self.reason = reason or (f"it is now held by {holder or 'nobody'} (attempt {attempt or '?'})")
        super().__init__(str(self))

    def __str__(self) -> str:
        lease = self.lease
        return f"Job {lease.job_id} is no longer held by {lease.owner} (attempt {lease.attempt}): {self.reason}"

    @classmethod
    def from_reply(cls, lease: Lease, reply: str) -> JobLostError:
        """From a script's ``LOST <owner> <attempt>`` or ``ALIVE`` error."""
        if "ALIVE" in reply:
            return cls(lease, holder=lease.owner, reason=f"its dispatcher {lease.owner} is alive")
        parts = reply.split("LOST", 1)[-1].split()
        return cls(lease, holder=parts[0] if parts else "", attempt=parts[1] if len(parts) > 1 else "")


class _Confirms(Protocol):
    async def confirm(self, lease: Lease, ttl: int) -> str: ...


class PublishGuard:
    """Lets a job's publishing writes start only while its lease provably holds (see the module's docstring)."""

    def __init__(self, store: _Confirms, lease: Lease, *, ttl: int, margin: float) -> None:
        if margin >= ttl:
            raise ValueError("the margin must be shorter than the heartbeat TTL")
        self.store, self.lease, self.ttl, self.margin = store, lease, ttl, margin
        self._valid_until = float("-inf")
        self._abandoned: str | None = None
        self.confirmations = 0

    def abandon(self, reason: str) -> None:
        """The dispatcher learnt it lost the job (its watch loop or heartbeat): refuse every later check."""
        self._abandoned = reason

    async def check(self) -> None:
        """Return at once while the last confirmation is fresh; else confirm again.

        Raises :class:`JobLostError` when another dispatcher holds the job, and
        :class:`InvalidTransitionError` when it is no longer in progress (cancelled meanwhile).
        """
        if self._abandoned is not None:
            raise JobLostError(self.lease, reason=self._abandoned)
        if time.monotonic() < self._valid_until:
            return
        started = time.monotonic()  # before the call: the heartbeat key lives at least ttl from here
        status = await self.store.confirm(self.lease, self.ttl)
        self.confirmations += 1
        if status != "in_progress":
            raise InvalidTransitionError(self.lease.job_id, status, "completed")
        self._valid_until = started + self.ttl - self.margin
