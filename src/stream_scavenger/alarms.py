"""Deprecated: the alarms live in :mod:`stream_scavenger.monitoring` (``AlarmThresholds`` is
also ``stream_scavenger.AlarmThresholds``). This module only re-exports them."""

from __future__ import annotations

import warnings

from .monitoring import PERIOD, AlarmThresholds, create_alarms, validate_thresholds

__all__ = ["PERIOD", "AlarmThresholds", "create_alarms", "validate_thresholds"]

warnings.warn(
    "stream_scavenger.alarms is deprecated: import from stream_scavenger (AlarmThresholds) "
    "or stream_scavenger.monitoring",
    DeprecationWarning,
    stacklevel=2,
)
