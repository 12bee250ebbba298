"""The checks of the construct's options; every error names the construct, the option and its range.

Tokens: ``batch_size``, ``parallelization_factor``, ``retry_attempts`` and ``memory_size``
take an unresolved number (``CfnParameter.value_as_number``); ``max_batching_window``,
``max_record_age`` and ``timeout`` take ``Duration.seconds(<token>)`` (a token cannot be
converted between units, and CloudFormation wants seconds); the counts of
``AlarmThresholds`` take a number token and its ``iterator_age`` ``Duration.millis(<token>)``.
Every other option needs a value known at synth time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, Token
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import IConstruct


class ScavengerConfigError(ValueError):
    """An option of :class:`~stream_scavenger.StreamScavenger` is invalid. The message starts
    with the construct's path (``Stack/Scavenger: batch_size must be ...``), then names the
    option and its allowed range."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        #: The message without the path.
        self.reason = message
        #: The path of the construct whose option is invalid (None until it is known).
        self.path: str | None = None
        if path is not None:
            self.at(path)

    def at(self, path: str) -> ScavengerConfigError:
        """Name the construct ``path`` in the message (once)."""
        if self.path is None:
            self.path = path
            self.args = (f"{path}: {self.reason}",)
        return self


@contextmanager
def naming_errors(scope: IConstruct) -> Iterator[None]:
    """Every ScavengerConfigError raised inside names ``scope``'s path."""
    try:
        yield
    except ScavengerConfigError as err:
        err.at(scope.node.path)
        raise


def check_int(option: str, value: int | float, low: int, high: int) -> None:
    """``value`` must be a whole number in ``low..high`` (or an unresolved token)."""
    if Token.is_unresolved(value):
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ScavengerConfigError(f"{option} must be an integer in {low}..{high}, got {value!r}")


def check_duration(option: str, value: Duration, low_s: int, high_s: int) -> None:
    """``value`` must be a whole number of seconds in ``low_s..high_s``, or
    ``Duration.seconds(<token>)``."""
    if not isinstance(value, Duration):
        raise ScavengerConfigError(f"{option} must be an aws_cdk.Duration, got {value!r}")
    if value.is_unresolved():
        if value.unit_label() != "seconds":
            raise ScavengerConfigError(
                f"{option} comes from a token, so it must be Duration.seconds(<token>) "
                f"({low_s}..{high_s} seconds): a token cannot be converted from "
                f"{value.unit_label()}"
            )
        return
    seconds = value.to_seconds(integral=False)
    if seconds != int(seconds):
        raise ScavengerConfigError(
            f"{option} must be whole seconds, {low_s}..{high_s} seconds, got {seconds:g} seconds"
        )
    if not low_s <= seconds <= high_s:
        raise ScavengerConfigError(
            f"{option} must be {low_s}..{high_s} seconds, got {value.to_human_string()}"
        )


_LOG_LEVELS = {
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARN": "WARN",
    "WARNING": "WARN",
    "ERROR": "ERROR",
}


@dataclass(frozen=True)
class MappingOptions:
    """The event source mapping's options, checked (the ranges Lambda accepts for a
    DynamoDB stream)."""

    batch_size: int | float
    max_batching_window: Duration | None
    parallelization_factor: int | float
    starting_position: lambda_.StartingPosition
    retry_attempts: int | float
    max_record_age: Duration
    bisect_batch_on_error: bool
    enabled: bool = True
    filter_encryption: kms.IKey | None = None
    #: The user's ``filters`` (what ``filter_encryption`` is for).
    filters: Sequence[Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        check_int("batch_size", self.batch_size, 1, 10000)
        if self.max_batching_window is not None:
            check_duration("max_batching_window", self.max_batching_window, 0, 300)
        check_int("parallelization_factor", self.parallelization_factor, 1, 10)
        if self.starting_position not in (
            lambda_.StartingPosition.TRIM_HORIZON,
            lambda_.StartingPosition.LATEST,
        ):
            raise ScavengerConfigError(
                "starting_position must be StartingPosition.TRIM_HORIZON or LATEST for "
                f"DynamoDB streams, got {self.starting_position}"
            )
        check_int("retry_attempts", self.retry_attempts, 0, 10000)
        check_duration("max_record_age", self.max_record_age, 60, 604800)
        # The mapping always has the construct's eventName pattern, so aws-cdk-lib's own check
        # (no filters) cannot fire: without user filters a key would encrypt no item values.
        if self.filter_encryption is not None and not self.filters:
            raise ScavengerConfigError(
                "filter_encryption encrypts the filters' patterns (they can name item values) "
                "and needs at least one pattern in filters=[...]; without filters the only "
                "pattern is the event-name selection: set filters or drop filter_encryption"
            )


@dataclass(frozen=True)
class FunctionOptions:
    """The function's options, checked."""

    memory_size: int | float
    timeout: Duration
    log_retention: logs.RetentionDays
    log_level: str
    log_item_keys: bool
    tracing: lambda_.Tracing | None = None

    def __post_init__(self) -> None:
        check_int("memory_size", self.memory_size, 128, 10240)
        check_duration("timeout", self.timeout, 5, 900)
        level = self.application_log_level
        if self.log_item_keys and level != lambda_.ApplicationLogLevel.DEBUG:
            raise ScavengerConfigError(
                "log_item_keys=True logs keys at DEBUG level: set log_level='DEBUG' as well"
            )

    @property
    def application_log_level(self) -> lambda_.ApplicationLogLevel:
        """``log_level`` as Lambda's application log level."""
        name = _LOG_LEVELS.get(str(self.log_level).upper())
        if name is None:
            raise ScavengerConfigError(
                f"log_level must be DEBUG, INFO, WARN or ERROR, got {self.log_level!r}"
            )
        return lambda_.ApplicationLogLevel[name]
