"""Deprecated: the dashboard lives in :mod:`stream_scavenger.monitoring`. This module only
re-exports it."""

from __future__ import annotations

import warnings

from .monitoring import create_dashboard

__all__ = ["create_dashboard"]

warnings.warn(
    "stream_scavenger.dashboard is deprecated: import from stream_scavenger.monitoring",
    DeprecationWarning,
    stacklevel=2,
)
