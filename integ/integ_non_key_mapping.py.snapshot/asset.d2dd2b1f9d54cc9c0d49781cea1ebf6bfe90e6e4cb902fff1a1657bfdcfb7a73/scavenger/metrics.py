"""The function's metrics, as CloudWatch embedded metric format (EMF) log lines.

One JSON line per invocation on stdout; CloudWatch Logs turns it into metrics
with no API call and no extra dependency.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

from .config import (
    METRICS,
    METRICS_DIMENSION,
    METRICS_NAMESPACE,
    TARGET_DIMENSION,
    TARGET_METRICS,
)


def emf_document(
    values: dict[str, float],
    function_name: str,
    timestamp_ms: int,
    target_table: str | None = None,
) -> dict[str, Any]:
    """The EMF object for one invocation's ``values`` (names from ``config.METRICS``).

    With ``target_table``, the values are one target's (names from ``config.TARGET_METRICS``)
    and carry the ``TargetTable`` dimension as well. A name outside its table raises: the
    construct's alarms and dashboard know only the table's metrics, and its units.
    """
    table = METRICS if target_table is None else TARGET_METRICS
    unknown = set(values) - set(table)
    if unknown:
        kind = "per-target metrics" if target_table is not None else "metrics"
        raise ValueError(f"not {kind} of the contract: {sorted(unknown)}")
    dimensions = {METRICS_DIMENSION: function_name}
    if target_table is not None:
        dimensions[TARGET_DIMENSION] = target_table
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": METRICS_NAMESPACE,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": METRICS[name]} for name in values],
                }
            ],
        },
        **dimensions,
        **values,
    }


def emit(
    values: dict[str, float],
    function_name: str,
    stream: IO[str] | None = None,
    target_table: str | None = None,
) -> None:
    """Write one EMF line for ``values`` (one target's, with ``target_table``)."""
    out = stream or sys.stdout
    now_ms = int(time.time() * 1000)
    line = json.dumps(emf_document(values, function_name, now_ms, target_table))
    out.write(line + "\n")
    out.flush()
