"""An optional CloudWatch dashboard: the scavenger's health on one screen."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct


def create_dashboard(
    scope: Construct,
    name: str | None,
    metrics: dict[str, cloudwatch.IMetric],
    per_target: dict[str, list[cloudwatch.IMetric]] | None = None,
) -> cloudwatch.Dashboard:
    """Invocations, errors, throttles, iterator age, deletes vs matches, retries, replayed and
    unmappable records, on-failure queue depth and consumed write capacity; with several
    targets also keys deleted and records reported per target (``per_target``, by title)."""

    def graph(title: str, *names: str) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title=title, left=[metrics[n] for n in names if n in metrics], width=8, height=6
        )

    dashboard = cloudwatch.Dashboard(scope, "Dashboard", dashboard_name=name)
    dashboard.add_widgets(
        graph("Invocations, errors, throttles", "invocations", "errors", "throttles"),
        graph("Iterator age (max, ms)", "iterator_age"),
        graph("Keys deleted vs records matched", "keys_deleted", "records_matched"),
    )
    dashboard.add_widgets(
        graph("Retries and throttled requests", "retries", "throttled_requests"),
        graph("Replayed and unmappable records", "records_reported", "unmappable_records"),
        graph(
            "Given up on: queue depth, delivery failures",
            "dead_letter_messages",
            "destination_delivery_failures",
        ),
    )
    dashboard.add_widgets(
        graph("Consumed write capacity (WCU)", "consumed_write_capacity"),
        *(
            cloudwatch.GraphWidget(title=title, left=lines, width=8, height=6)
            for title, lines in (per_target or {}).items()
        ),
    )
    return dashboard
