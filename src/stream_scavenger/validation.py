"""Range checks that name the option and its allowed range; unresolved tokens pass."""

from __future__ import annotations

from aws_cdk import Duration, Token


class ScavengerConfigError(ValueError):
    """An option of :class:`~stream_scavenger.StreamScavenger` is invalid."""


def check_int(option: str, value: int | float, low: int, high: int) -> None:
    """``value`` must be a whole number in ``low..high`` (or an unresolved token)."""
    if Token.is_unresolved(value):
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ScavengerConfigError(f"{option} must be an integer in {low}..{high}, got {value!r}")


def check_duration(option: str, value: Duration, low_s: int, high_s: int) -> None:
    """``value`` must be a Duration of ``low_s..high_s`` seconds (or an unresolved token)."""
    if not isinstance(value, Duration):
        raise ScavengerConfigError(f"{option} must be an aws_cdk.Duration, got {value!r}")
    if value.is_unresolved():
        return
    seconds = value.to_seconds()
    if not low_s <= seconds <= high_s:
        raise ScavengerConfigError(
            f"{option} must be {low_s}..{high_s} seconds, got {value.to_human_string()}"
        )
