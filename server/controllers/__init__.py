"""HTTP controllers."""

from server.controllers.graphs import GraphController
from server.controllers.health import HealthController
from server.controllers.jobs import JobController

__all__ = ["GraphController", "HealthController", "JobController"]
