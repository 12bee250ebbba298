"""Deprecated: the old name of :mod:`stream_scavenger.redrive`; import from there."""

import warnings

from ..redrive import *  # noqa: F403

warnings.warn(
    "stream_scavenger.local.redrive is deprecated: import from stream_scavenger.redrive",
    DeprecationWarning,
    stacklevel=2,
)
