"""The function's metrics, as CloudWatch embedded metric format (EMF) log lines.

One JSON line per invocation on stdout; CloudWatch Logs turns it into metrics
with no API call and no extra dependency.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

from .config import METRICS, METRICS_DIMENSION, METRICS_NAMESPACE


def emf_document(values: dict[str, float], function_name: str, timestamp_ms: int) -> dict[str, Any]:
    """The EMF object for one invocation's ``values`` (keys from ``config.METRICS``)."""
    unknown = set(values) - set(METRICS)
    if unknown:
        raise ValueError(f"not metrics of the contract: {sorted(unknown)}")
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": METRICS_NAMESPACE,
                    "Dimensions": [[METRICS_DIMENSION]],
                    "Metrics": [{"Name": name, "Unit": METRICS[name]} for name in values],
                }
            ],
        },
        METRICS_DIMENSION: function_name,
        **values,
    }


def emit(values: dict[str, float], function_name: str, stream: IO[str] | None = None) -> None:
    """Write one EMF line for ``values``."""
    out = stream or sys.stdout
    line = json.dumps(emf_document(values, function_name, int(time.time() * 1000)))
    out.write(line + "\n")
    out.flush()
