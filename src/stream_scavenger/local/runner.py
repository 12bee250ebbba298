"""Deprecated: the old name of :mod:`stream_scavenger.local.event_source_mapping`."""

import warnings

from .event_source_mapping import *  # noqa: F403

warnings.warn(
    "stream_scavenger.local.runner is deprecated: "
    "import from stream_scavenger.local.event_source_mapping",
    DeprecationWarning,
    stacklevel=2,
)
