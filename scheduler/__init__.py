"""The Dask client, the dispatcher, progress reporting and the Redis job store."""

from scheduler.records.assets import AssetNotFoundError, AssetStore, public_asset
from scheduler.dispatch.cluster import ClusterHandle
from scheduler.dispatch.dispatcher import Dispatcher
from scheduler.errors import (
    InvalidTransitionError,
    JobNotFoundError,
    QueueUnavailableError,
    SourceError,
    UnknownJobTypeError,
)
from scheduler.admission.graphs import DOCUMENTED_JOB_TYPES, GraphCatalog
from scheduler.wiring.runtime import Runtime, broker_display
from scheduler.admission.service import JobService
from scheduler.settings import APP_NAME, QUEUE_NAME, Settings
from scheduler.records.jobs import STATUSES, TERMINAL, JobStore

__all__ = [
    "APP_NAME",
    "DOCUMENTED_JOB_TYPES",
    "QUEUE_NAME",
    "STATUSES",
    "TERMINAL",
    "AssetNotFoundError",
    "AssetStore",
    "ClusterHandle",
    "Dispatcher",
    "GraphCatalog",
    "InvalidTransitionError",
    "JobNotFoundError",
    "JobService",
    "JobStore",
    "QueueUnavailableError",
    "Runtime",
    "Settings",
    "SourceError",
    "UnknownJobTypeError",
    "broker_display",
    "public_asset",
]
