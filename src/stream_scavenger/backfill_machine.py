"""The backfill on AWS (``backfill=``): a state machine over the source's scan segments.

A Map state runs the segments in parallel; a segment is a loop of calls of the worker
function (the same asset as the scavenger, :data:`~.runtime.scavenger.config.
BACKFILL_HANDLER`), each scanning pages for up to 15 minutes and deleting, the answer
carrying the scan's position into the next call until the segment is done. The execution's
output is every segment's last answer: its counts, and where a later run must start again
(``held_at``) when records were not deleted.

An inline Map, not a Distributed Map: a Distributed Map's role needs wildcards on its child
executions that no acknowledgment can name, and one execution's 25,000 history events hold
about 3,500 worker calls, over 800 hours of scanning. Its output holds every segment's
answer (Step Functions carries at most 256 KB), hence at most :data:`MAX_SEGMENTS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import CfnElement, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from . import compliance
from .function import runtime_function, scavenger_config
from .permissions import grant_deletes
from .runtime.scavenger.config import (
    BACKFILL_DONE,
    BACKFILL_HANDLER,
    BACKFILL_SEGMENT,
    BACKFILL_TOTAL_SEGMENTS,
    BackfillConfig,
)
from .targets import ResolvedTarget
from .validation import FunctionOptions, ScavengerConfigError, check_int

#: Segments of one backfill: each segment's last answer (about 1 KB) is in the output.
MAX_SEGMENTS = 100
#: An inline Map runs at most 40 iterations at once.
MAX_CONCURRENCY = 40
#: The worker's timeout: each call scans until less than its page margin is left.
WORKER_TIMEOUT = Duration.minutes(15)


@dataclass(frozen=True)
class BackfillOptions:
    """The backfill state machine's settings (``backfill=BackfillOptions(...)``; ``True``
    takes these defaults)."""

    segments: int = 16
    """Scan segments (``TotalSegments``), 1..100: more run more in parallel."""
    max_concurrency: int = 16
    """Segments scanned at once, 1..40 (an inline Map's limit)."""
    max_write_units: int | None = None
    """Write units per second all segments in flight may spend together (each gets its share);
    None: the deletes pace themselves to what the targets accept."""
    max_read_units: int | None = None
    """Read units per second of the scan, all segments together; None: unbounded."""
    page_size: int = 1000
    """Items per ``Scan`` page, 1..10000 (DynamoDB also ends a page at 1 MB)."""

    def __post_init__(self) -> None:
        check_int("backfill segments", self.segments, 1, MAX_SEGMENTS)
        check_int("backfill max_concurrency", self.max_concurrency, 1, MAX_CONCURRENCY)
        check_int("backfill page_size", self.page_size, 1, 10_000)
        for name, units in (("max_write_units", self.max_write_units),
                            ("max_read_units", self.max_read_units)):  # fmt: skip
            if units is not None:
                check_int(f"backfill {name}", units, self.max_concurrency, 10_000_000)

    def per_segment(self, units: int | None) -> float | None:
        """Each segment's share of a budget of ``units`` per second."""
        in_flight = min(self.segments, self.max_concurrency)
        return None if units is None else units / in_flight


def backfill_options(given: bool | BackfillOptions) -> BackfillOptions | None:
    """``backfill=`` as options: None for False."""
    if given is True:
        return BackfillOptions()
    if given is False:
        return None
    if not isinstance(given, BackfillOptions):
        raise ScavengerConfigError(
            f"backfill must be True, False or BackfillOptions(...), got {given!r}"
        )
    return given


class ScavengerBackfill(Construct):
    """The worker function, its role and log group, and the state machine that drives it.

    Start an execution with an empty input (``{}``); its output is each segment's last answer.
    """

    #: The worker: the scavenger's asset, handler ``scavenger.backfill.handler``.
    function: lambda_.Function
    #: The worker's role: ``Scan`` on the source, ``BatchWriteItem`` on the targets, its logs.
    role: iam.Role
    log_group: logs.LogGroup
    state_machine: sfn.StateMachine

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        options: BackfillOptions,
        function_options: FunctionOptions,
        source_table: dynamodb.ITable,
        source_keys: Sequence[str],
        view_type: str,
        event_name: str,
        targets: Sequence[ResolvedTarget],
        filters: Sequence[str],
        filter_encryption: kms.IKey | None,
        dry_run: bool,
    ) -> None:
        super().__init__(scope, id)
        self._retention = function_options.log_retention
        config = scavenger_config(function_options, targets, dry_run)
        settings = BackfillConfig(
            source_table.table_name, tuple(source_keys), view_type, event_name, tuple(filters),
            options.page_size, options.per_segment(options.max_write_units),
            options.per_segment(options.max_read_units),
        )  # fmt: skip
        self.log_group = logs.LogGroup(self, "LogGroup", retention=function_options.log_retention)
        self.role = self._worker_role(source_table, targets, dry_run)
        self.function = runtime_function(
            self,
            function_options,
            handler=BACKFILL_HANDLER,
            timeout=WORKER_TIMEOUT,
            role=self.role,
            log_group=self.log_group,
            environment={**config.to_env(), **settings.to_env()},
            description="stream-scavenger backfill: scans a segment of the source and deletes",
            # The filter patterns can name item values: under the key that guards them.
            environment_encryption=filter_encryption,
        )
        self.state_machine = self._state_machine(options)

    def _worker_role(
        self, source: dynamodb.ITable, targets: Sequence[ResolvedTarget], dry_run: bool
    ) -> iam.Role:
        """Write its logs, ``Scan`` the source, ``BatchWriteItem`` the targets; nothing else."""
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="stream-scavenger backfill: scan one table, delete from its targets",
        )
        self.log_group.grant_write(role)
        role.add_to_policy(
            iam.PolicyStatement(actions=["dynamodb:Scan"], resources=[source.table_arn])
        )
        if source.encryption_key is not None:
            source.encryption_key.grant(role, "kms:Decrypt")
        if not dry_run:
            grant_deletes(role, [t.table for t in targets])
        return role

    def _state_machine(self, options: BackfillOptions) -> sfn.StateMachine:
        """Segments 0..n-1 in a Map; in each, call the worker until ``done``."""
        scan = tasks.LambdaInvoke(
            self,
            "Scan and delete",
            lambda_function=self.function,
            payload_response_only=True,
            retry_on_service_exceptions=True,
        )
        done = sfn.Choice(self, "Segment done?")
        done.when(
            sfn.Condition.boolean_equals(f"$.{BACKFILL_DONE}", True),
            sfn.Succeed(self, "Segment scanned"),
        )
        done.otherwise(scan)
        segments = sfn.Map(
            self,
            "Segments",
            items_path="$.segments",
            item_selector={
                BACKFILL_SEGMENT: sfn.JsonPath.number_at("$$.Map.Item.Value"),
                BACKFILL_TOTAL_SEGMENTS: options.segments,
            },
            max_concurrency=options.max_concurrency,
        )
        segments.item_processor(scan.next(done))
        numbers = sfn.Pass(
            self,
            "Segment numbers",
            parameters={"segments": sfn.JsonPath.array_range(0, options.segments - 1, 1)},
        )
        log_group = logs.LogGroup(self, "StateMachineLogs", retention=self._retention)
        machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(numbers.next(segments)),
            comment="stream-scavenger backfill: scan the source's segments, delete their copies",
            # Execution data carries scan positions, which are item keys: not logged.
            logs=sfn.LogOptions(
                destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
            tracing_enabled=True,
        )
        stack = Stack.of(self)
        resource = self.function.node.default_child
        assert isinstance(resource, CfnElement)
        worker = stack.resolve(stack.get_logical_id(resource))
        compliance.acknowledge(machine, *compliance.backfill_machine(worker))
        return machine
