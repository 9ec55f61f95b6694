"""Media and AI operators, and their registry.

Importing this package registers every built-in operator, so a Dask worker that
unpickles a task sees the same registry as the process that built the graph.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
from typing import Any

from operators.context import EVENTS_TOPIC, OpContext, TaskCancelledError
from operators.errors import (
    MediaError,
    OperatorError,
    OperatorParamsError,
    PathOutsideRootError,
    UnknownOperatorError,
)
from operators.registry import REGISTRY, NoParams, OperatorRegistry, OperatorSpec, get_operator, operator
from operators.storage import Storage, safe_relpath
from operators.types import Frozen, SourceRef, StoredFile

__all__ = [
    "EVENTS_TOPIC",
    "REGISTRY",
    "Frozen",
    "MediaError",
    "NoParams",
    "OpContext",
    "OperatorError",
    "OperatorParamsError",
    "OperatorRegistry",
    "OperatorSpec",
    "PathOutsideRootError",
    "SourceRef",
    "Storage",
    "StoredFile",
    "TaskCancelledError",
    "UnknownOperatorError",
    "dask_setup",
    "get_operator",
    "operator",
    "safe_relpath",
]

# Each subpackage (media, speech, util, ...) registers its operators on import.
_BUILTIN_PACKAGES = ("operators.util", "operators.media", "operators.speech", "operators.render", "operators.clips",
                     "operators.export", "operators.tighten", "operators.voice", "operators.chapters")


def _load_builtins() -> None:
    for pkg_name in _BUILTIN_PACKAGES:
        try:
            pkg = importlib.import_module(pkg_name)
        except ModuleNotFoundError as exc:
            if exc.name == pkg_name:
                continue
            raise
        # walk_packages: a subpackage's modules (operators.clips.vision, ...) register theirs too.
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg_name}."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):
                importlib.import_module(info.name)


_load_builtins()


def dask_setup(worker: Any) -> None:
    """Dask's preload hook (``--preload operators``): undo Dask's malloc setting, warm the speech model.

    The model loads in a thread, so the worker joins the cluster at once; a task that needs it before
    the warm-up is done waits on the same load instead of starting a second one.
    """
    from operators.util.malloc import relax_malloc_trim

    relax_malloc_trim()

    def warm() -> None:
        from operators.speech.whisper import warm_up

        try:
            warm_up()
        except Exception:  # a broken model must not stop the worker: its jobs report it
            logging.getLogger("operators").warning("Could not preload the speech model", exc_info=True)

    threading.Thread(target=warm, name="ave-warm-up", daemon=True).start()
