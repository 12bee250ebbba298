"""stream-scavenger: a DynamoDB stream on one table deletes the matching items from another.

>>> from stream_scavenger import StreamScavenger
>>> StreamScavenger(stack, "Scavenger",  # doctest: +SKIP
...                 source_table=messages, target_table=staging)

The construct side (and with it aws-cdk-lib and its jsii kernel) is imported
on first use, so the local runner and the CLI start without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backfill_machine import BackfillOptions
    from .construct import StreamScavenger
    from .events import EventName
    from .monitoring import AlarmThresholds
    from .targets import ScavengerTarget
    from .validation import ScavengerConfigError

__all__ = [
    "AlarmThresholds",
    "BackfillOptions",
    "EventName",
    "ScavengerConfigError",
    "ScavengerTarget",
    "StreamScavenger",
]
# The one definition of the version: pyproject.toml reads it ([tool.hatch.version]).
__version__ = "0.1.0"

_HOMES = {
    "AlarmThresholds": ".monitoring",
    "BackfillOptions": ".backfill_machine",
    "StreamScavenger": ".construct",
    "EventName": ".events",
    "ScavengerConfigError": ".validation",
    "ScavengerTarget": ".targets",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
