"""The scavenger function: the bundled runtime, configured through its environment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from . import compliance
from .runtime.scavenger.config import HANDLER, ScavengerConfig
from .targets import ResolvedTarget
from .validation import FunctionOptions

#: The directory shipped as the function's code: the ``scavenger`` package only.
RUNTIME_ASSET_DIR = Path(__file__).parent / "runtime"


def create_function(
    scope: Construct,
    options: FunctionOptions,
    targets: Sequence[ResolvedTarget],
    dry_run: bool,
    role: iam.IRole,
    log_group: logs.ILogGroup,
) -> lambda_.Function:
    """The function, with the configuration contract (:mod:`.runtime.scavenger.config`) of
    ``targets`` in its environment.

    With ``tracing`` (ACTIVE or PASS_THROUGH) aws-cdk-lib adds ``xray:PutTraceSegments`` and
    ``xray:PutTelemetryRecords`` on ``*`` to ``role``'s policy; DISABLED adds nothing."""
    config = scavenger_config(options, targets, dry_run)
    function = runtime_function(
        scope,
        options,
        handler=HANDLER,
        timeout=options.timeout,
        role=role,
        log_group=log_group,
        environment=config.to_env(),
        description="stream-scavenger: deletes target items named by stream records",
        tracing=options.tracing,
    )
    if options.tracing in (lambda_.Tracing.ACTIVE, lambda_.Tracing.PASS_THROUGH):
        compliance.acknowledge(role, compliance.WILDCARD_RESOURCES_WITH_XRAY)
    return function


def scavenger_config(
    options: FunctionOptions, targets: Sequence[ResolvedTarget], dry_run: bool
) -> ScavengerConfig:
    """The configuration contract of ``targets``, as the scavenger and the backfill's worker
    both carry it."""
    return ScavengerConfig(
        targets=tuple(t.config() for t in targets),
        log_items=options.log_item_keys,
        dry_run=dry_run,
    )


def runtime_function(
    scope: Construct,
    options: FunctionOptions,
    *,
    handler: str,
    timeout: Duration,
    role: iam.IRole,
    log_group: logs.ILogGroup,
    environment: dict[str, str],
    description: str,
    **extra: Any,
) -> lambda_.Function:
    """A function of the bundled runtime (the scavenger, or the backfill's worker): Python
    3.14 on arm64, JSON logs at the options' level, the asset without bytecode."""
    return lambda_.Function(
        scope,
        "Function",
        runtime=lambda_.Runtime.PYTHON_3_14,
        architecture=lambda_.Architecture.ARM_64,
        handler=handler,
        code=lambda_.Code.from_asset(
            str(RUNTIME_ASSET_DIR), exclude=["**/__pycache__", "**/*.pyc"]
        ),
        memory_size=options.memory_size,
        timeout=timeout,
        role=role,
        log_group=log_group,
        logging_format=lambda_.LoggingFormat.JSON,
        application_log_level_v2=options.application_log_level,
        system_log_level_v2=lambda_.SystemLogLevel.WARN,
        environment=environment,
        description=description,
        **extra,
    )
