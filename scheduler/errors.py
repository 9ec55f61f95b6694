"""Errors of the job store and the job service."""

from __future__ import annotations

__all__ = [
    "InvalidTransitionError",
    "JobNotFoundError",
    "QueueUnavailableError",
    "SourceError",
    "StorageUnavailableError",
    "UnknownJobTypeError",
]


class QueueUnavailableError(ConnectionError):
    """Redis could not be reached; ``str()`` is the Redis client's own message."""


class StorageUnavailableError(QueueUnavailableError):
    """The media storage did not answer (an S3 endpoint down): transient, like Redis being away, so the
    API answers 503 and a dispatcher waits for it rather than failing the job."""


class JobNotFoundError(LookupError):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"Job {job_id} not found")

    def __str__(self) -> str:
        return f"Job {self.job_id} not found"


class InvalidTransitionError(ValueError):
    """A status change that the job's lifecycle does not allow."""

    def __init__(self, job_id: str, current: str, wanted: str) -> None:
        self.job_id, self.current, self.wanted = job_id, current, wanted
        super().__init__(f"Job {job_id} is {current} and cannot become {wanted}")

    def __str__(self) -> str:
        return f"Job {self.job_id} is {self.current} and cannot become {self.wanted}"


class UnknownJobTypeError(ValueError):
    """No graph exists for a job type (or it is not available yet)."""


class SourceError(ValueError):
    """A payload's source_uri or source_asset_id cannot be used; ``field`` names which."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)
