"""Deprecated: the old name of :mod:`stream_scavenger.local.scenario`; import from there."""

import warnings

from .scenario import *  # noqa: F403

warnings.warn(
    "stream_scavenger.local.check is deprecated: import from stream_scavenger.local.scenario",
    DeprecationWarning,
    stacklevel=2,
)
