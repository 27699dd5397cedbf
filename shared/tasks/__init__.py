"""The tasks shopflow trains and serves, by name.

from shared.tasks import get_task, TASKS
get_task("propensity").primary_metric   # -> "roc_auc"
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from shared.errors import UnknownTaskError

if TYPE_CHECKING:
    from shared.tasks.base import Task, classification_metrics, is_better

# name -> "module:attribute"; a task's module (and its model code) loads on first use.
TASKS: dict[str, str] = {
    "sentiment": "shared.tasks.sentiment:SENTIMENT",
    "propensity": "shared.tasks.propensity:PROPENSITY",
    "recommendation": "shared.tasks.recommendation:RECOMMENDATION",
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    module, attribute = TASKS[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def __getattr__(name: str) -> Any:
    # The task base (torch, sklearn) loads on first use, so naming the tasks (`TASKS`,
    # e.g. for a command's --help) stays cheap.
    if name in ("Task", "classification_metrics", "is_better"):
        from shared.tasks import base

        return getattr(base, name)
    raise AttributeError(f"module 'shared.tasks' has no attribute {name!r}")


__all__ = ["TASKS", "Task", "get_task", "classification_metrics", "is_better"]
