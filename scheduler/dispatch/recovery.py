"""Recovery: jobs left in_progress by a dispatcher that is gone, and claims this dispatcher never learnt of.

Both re-queue the job (or fail it once it used up its attempts), fenced with the lease recovery saw, so a
job that was taken over meanwhile is left alone.

- **Orphans**: a job whose dispatcher's heartbeat key is gone. The requeue also checks, in the same script,
  that the heartbeat is still gone: a dispatcher that came back (resumed from a stall) keeps its job.
- **Strays**: a job Redis says *this* dispatcher holds, which it is not running. A claim whose reply was
  lost (Redis killed after running the script, before answering) leaves one: the job is in_progress under
  an owner whose heartbeat is alive, so no other recovery would ever take it. A claim whose reply is merely
  on its way is in the dispatcher's list by the next pass, so only a job seen as a stray in two passes in a
  row, with the same attempt, is re-queued.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from scheduler.errors import InvalidTransitionError, JobNotFoundError
from scheduler.records.fencing import JobLostError, Lease
from scheduler.records.jobs import JobStore

__all__ = ["Recovery"]

_log = logging.getLogger("scheduler.dispatch.recovery")


@dataclass
class Recovery:
    """The recovery of one dispatcher (``owner``); :meth:`run` is one pass."""

    store: JobStore
    owner: str
    max_attempts: int
    #: Strays of the previous pass: job id -> the attempt it had.
    _strays: dict[str, int] = field(default_factory=dict)

    async def run(self, running: Collection[str]) -> list[str]:
        """One pass; ``running``: the jobs this dispatcher runs. The ids re-queued or failed."""
        handled = [job_id for job_id, owner in await self.store.orphans(exclude=self.owner)
                   if await self._orphan(job_id, owner)]
        mine = [job_id for job_id, owner in (await self.store.claimed()).items()
                if owner == self.owner and job_id not in running]
        return handled + await self._strays_of(mine)

    async def _orphan(self, job_id: str, owner: str) -> bool:
        lease = await self._lease(job_id, owner)
        return lease is not None and await self._give_up_or_requeue(
            lease, f"dispatcher {owner} stopped while running it", expect_dead=True)

    async def _strays_of(self, strays: list[str]) -> list[str]:
        seen, self._strays, handled = self._strays, {}, []
        for job_id in strays:
            lease = await self._lease(job_id, self.owner)
            if lease is None:
                continue
            if seen.get(job_id) != lease.attempt:
                self._strays[job_id] = lease.attempt  # look again next pass
            elif await self._give_up_or_requeue(
                    lease, f"dispatcher {self.owner} claimed it, but never learnt so (Redis went away "
                           "as it answered)", expect_dead=False):
                handled.append(job_id)
        return handled

    async def _lease(self, job_id: str, owner: str) -> Lease | None:
        """The lease ``owner`` holds on the job, or None when it holds none (taken over since the listing)."""
        try:
            fields = await self.store.internal(job_id)
        except JobNotFoundError:
            return None
        if fields.get("owner") != owner or fields.get("status") != "in_progress":
            return None
        return Lease(job_id, owner, int(fields.get("attempts") or 0))

    async def _give_up_or_requeue(self, lease: Lease, why: str, *, expect_dead: bool) -> bool:
        try:
            if lease.attempt >= self.max_attempts:
                await self.store.fail(lease.job_id, f"The job was interrupted {lease.attempt} times ({why}) "
                                                    "and is not retried again", lease=lease, expect_dead=expect_dead)
            else:
                await self.store.requeue(lease.job_id, f"Re-queued: {why} (attempt {lease.attempt} of "
                                                       f"{self.max_attempts})", lease=lease, expect_dead=expect_dead)
        except (JobLostError, InvalidTransitionError) as exc:
            _log.info("recovery left job %s alone: %s", lease.job_id, exc)
            return False
        _log.warning("recovery: job %s %s (%s)", lease.job_id,
                     "failed" if lease.attempt >= self.max_attempts else "re-queued", why)
        return True
