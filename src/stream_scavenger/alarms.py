"""Failure alarms, created by default, so a failing scavenger cannot stay silent.

Every alarm treats missing data as not breaching: an idle scavenger (no
records, so no data points) does not alarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from .validation import ScavengerConfigError

PERIOD = Duration.minutes(5)


@dataclass(frozen=True)
class AlarmThresholds:
    """Thresholds of the default alarms; set one to ``None`` to switch that alarm off.

    Counts are sums over 5-minute periods; ``evaluation_periods`` is how many
    consecutive periods must breach.
    """

    errors: float | None = 1
    """Function errors (the scavenger handles bad records itself, so any error is news)."""
    throttles: float | None = 1
    """Lambda throttles of the function, sustained for 3 periods (15 minutes)."""
    iterator_age: Duration | None = Duration.minutes(30)
    """Maximum stream iterator age: the stream is falling behind. Default 30 minutes, well
    inside the 24-hour stream retention and half the default ``max_record_age``."""
    dead_letter_messages: float | None = 1
    """Messages visible in the construct's on-failure queue: records were given up on."""
    destination_delivery_failures: float | None = 1
    """Failures to deliver to the on-failure destination: records were given up on and lost."""
    records_reported: float | None = 1
    """Records reported for replay, sustained for 3 periods: deletes keep failing."""
    unmappable_records: float | None = 1
    """Records that could never name a target key: a data or mapping problem."""

    @classmethod
    def off(cls) -> AlarmThresholds:
        """No alarms at all (build your own from the construct's ``metric_*()`` methods)."""
        return cls(**dict.fromkeys(cls.__dataclass_fields__))


#: Alarms that must breach in this many consecutive periods (others: one).
_SUSTAINED = {"throttles": 3, "records_reported": 3}
_MEANING = {
    "errors": "the scavenger function failed",
    "throttles": "the scavenger function is throttled",
    "iterator_age": "the scavenger is falling behind its stream",
    "dead_letter_messages": "records were given up on (see the on-failure queue)",
    "destination_delivery_failures": "records were given up on and could not be reported",
    "records_reported": "deletes keep failing and records are being replayed",
    "unmappable_records": "stream records could not be mapped to a target key",
}


def validate_thresholds(thresholds: AlarmThresholds) -> None:
    """Thresholds must be positive (an alarm at 0 would always fire)."""
    for name, value in vars(thresholds).items():
        if value is None or (isinstance(value, Duration) and value.is_unresolved()):
            continue
        number = value.to_seconds() if isinstance(value, Duration) else value
        if isinstance(number, bool) or not isinstance(number, int | float) or number <= 0:
            raise ScavengerConfigError(
                f"alarms.{name} must be a positive threshold or None (off), got {value!r}"
            )


def create_alarms(
    scope: Construct,
    metrics: dict[str, cloudwatch.IMetric],
    thresholds: AlarmThresholds,
    actions: Sequence[cloudwatch.IAlarmAction],
) -> dict[str, cloudwatch.Alarm]:
    """One alarm per threshold that is set and whose metric exists; keyed by threshold name."""
    validate_thresholds(thresholds)
    alarms: dict[str, cloudwatch.Alarm] = {}
    for name, value in vars(thresholds).items():
        if value is None or name not in metrics:
            continue
        threshold = value.to_milliseconds() if isinstance(value, Duration) else value
        alarm = cloudwatch.Alarm(
            scope,
            "".join(part.title() for part in name.split("_")) + "Alarm",
            metric=metrics[name],
            threshold=threshold,
            evaluation_periods=_SUSTAINED.get(name, 1),
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"stream-scavenger {scope.node.path}: {_MEANING[name]}",
        )
        for action in actions:
            alarm.add_alarm_action(action)
        alarms[name] = alarm
    return alarms
