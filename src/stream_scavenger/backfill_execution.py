"""``stream-scavenger backfill --deployed``: run the backfill state machine and follow it.

Given the state machine that ``backfill=True`` deploys, start an execution. Given one of its
executions, follow it while it runs; redrive it when it failed, was aborted or timed out
(Step Functions then reruns only the unfinished segments, each from the answer of its last
worker call: a resume); report it when it succeeded. Progress comes from the execution's
history, where each worker call's answer carries its segment's totals so far.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .backfill import BackfillReport
from .runtime.scavenger.backfill import PageResult, SourceTable
from .runtime.scavenger.config import (
    BACKFILL_SEGMENT,
    BACKFILL_TOTAL_SEGMENTS,
    BACKFILL_TOTALS,
    BackfillConfig,
    ConfigError,
    ScavengerConfig,
)

#: Seconds between two looks at a running execution.
POLL_S = 5.0
#: Execution states after which a redrive resumes it.
REDRIVABLE = ("FAILED", "ABORTED", "TIMED_OUT")
#: Seconds to wait for a redriven execution to show it runs again.
REDRIVE_SETTLE_S = 60.0


class DeployedError(ValueError):
    """The state machine or execution cannot be used (a set-up error: exit status 2)."""


@dataclass
class Worker:
    """What the state machine's worker scans, from its environment (None: unreadable)."""

    function: str
    settings: BackfillConfig | None = None
    config: ScavengerConfig | None = None
    why_unknown: str = ""


@dataclass
class Answers:
    """Each segment's latest answer in an execution's history, read as it grows."""

    sfn: Any
    execution_arn: str
    last_id: int = 0
    segments: dict[int, dict[str, Any]] = field(default_factory=dict)

    def read(self) -> None:
        """Read the events since the last read (newest first, until one already seen)."""
        fresh: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "executionArn": self.execution_arn, "reverseOrder": True, "maxResults": 1000,
        }  # fmt: skip
        while True:
            page = self.sfn.get_execution_history(**request)
            new = [e for e in page["events"] if e["id"] > self.last_id]
            fresh += new
            if len(new) < len(page["events"]) or not page.get("nextToken"):
                break
            request["nextToken"] = page["nextToken"]
        for event in sorted(fresh, key=lambda e: e["id"]):
            details = event.get("lambdaFunctionSucceededEventDetails") or {}
            if event["type"] == "LambdaFunctionSucceeded" and "output" in details:
                answer = json.loads(details["output"])
                self.segments[int(answer[BACKFILL_SEGMENT])] = answer
            self.last_id = max(self.last_id, event["id"])

    @property
    def scanned(self) -> int:
        return sum(int(a[BACKFILL_TOTALS].get("items", 0)) for a in self.segments.values())


def find_machine(sfn: Any, given: str) -> tuple[str, str | None]:
    """``given`` (a state machine's ARN or name, or an execution's ARN) as (state machine
    ARN, execution ARN or None)."""
    try:
        if ":execution:" in given:
            return sfn.describe_execution(executionArn=given)["stateMachineArn"], given
        if given.startswith("arn:"):
            return sfn.describe_state_machine(stateMachineArn=given)["stateMachineArn"], None
        pages = sfn.get_paginator("list_state_machines").paginate()
        found = [m["stateMachineArn"] for p in pages for m in p["stateMachines"]
                 if m["name"] == given]  # fmt: skip
    except Exception as err:  # noqa: BLE001 - not found, no access: reported as set-up errors
        raise DeployedError(f"cannot read {given}: {err}") from None
    if not found:
        raise DeployedError(f"no state machine named {given} in this account and region")
    return found[0], None


def worker_of(sfn: Any, lam: Any, machine_arn: str) -> Worker:
    """The function the state machine calls and what it scans (for the progress bar's total
    and the summary; without them the backfill is still followed)."""
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=machine_arn)["definition"])
    functions = _lambda_resources(definition)
    if len(functions) != 1:
        raise DeployedError(
            f"{machine_arn} calls {len(functions)} functions: not a stream-scavenger backfill"
        )
    worker = Worker(functions[0])
    try:
        described = lam.get_function_configuration(FunctionName=worker.function)
        environment = described.get("Environment") or {}
        if "Error" in environment:
            raise ConfigError(environment["Error"].get("Message", "encrypted"))
        variables = environment.get("Variables") or {}
        worker.settings = BackfillConfig.from_env(variables)
        worker.config = ScavengerConfig.from_env(variables)
    except Exception as err:  # noqa: BLE001 - only the total and the names are missing
        worker.why_unknown = f"cannot read the worker {worker.function}'s configuration: {err}"
    return worker


def _lambda_resources(states_language: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for state in states_language.get("States", {}).values():
        if state.get("Type") == "Task" and ":lambda:" in str(state.get("Resource")):
            found.append(state["Resource"])
        for nested in ("ItemProcessor", "Iterator"):
            if nested in state:
                found += _lambda_resources(state[nested])
    return sorted(set(found))


def start_or_resume(sfn: Any, machine_arn: str, execution_arn: str | None) -> tuple[str, str]:
    """Start an execution, or redrive the given one if it stopped unfinished; return its ARN
    and what was done (for the first line printed)."""
    if execution_arn is None:
        started = sfn.start_execution(stateMachineArn=machine_arn, input="{}")
        return started["executionArn"], "started"
    described = sfn.describe_execution(executionArn=execution_arn)
    status = described["status"]
    if status not in REDRIVABLE:
        return execution_arn, f"following ({status.lower()})"
    if described.get("redriveStatus", "REDRIVABLE") != "REDRIVABLE":
        reason = described.get("redriveStatusReason", described.get("redriveStatus"))
        return execution_arn, f"not redrivable ({status.lower()}: {reason})"
    sfn.redrive_execution(executionArn=execution_arn)
    count = int(described.get("redriveCount", 0))
    deadline = time.monotonic() + REDRIVE_SETTLE_S
    while time.monotonic() < deadline:
        now = sfn.describe_execution(executionArn=execution_arn)
        if int(now.get("redriveCount", 0)) > count or now["status"] != status:
            break
        time.sleep(1.0)
    return execution_arn, (
        f"redriven ({status.lower()} before): the unfinished segments go on from the answer "
        "of their last worker call"
    )


def follow(
    sfn: Any,
    execution_arn: str,
    on_progress: Callable[[int], None],
    *,
    poll_s: float = POLL_S,
) -> tuple[dict[str, Any], Answers]:
    """Poll the execution until it stops; ``on_progress`` gets the items scanned so far."""
    answers = Answers(sfn, execution_arn)
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        answers.read()
        on_progress(answers.scanned)
        if described["status"] not in ("RUNNING", "PENDING_REDRIVE"):
            return described, answers
        time.sleep(poll_s)


def report_of(
    described: Mapping[str, Any], answers: Answers, worker: Worker, item_count: int
) -> BackfillReport:
    """The execution as the local backfill's report: its output (each segment's last
    answer) when it succeeded, else the latest answer of each segment in its history."""
    if described["status"] == "SUCCEEDED" and described.get("output"):
        for answer in json.loads(described["output"]):
            answers.segments[int(answer[BACKFILL_SEGMENT])] = answer
    totals = PageResult()
    for answer in answers.segments.values():
        totals.add(PageResult.from_json(answer[BACKFILL_TOTALS]))
    segments = max([int(a[BACKFILL_TOTAL_SEGMENTS]) for a in answers.segments.values()] or [0])
    settings = worker.settings
    source = (
        SourceTable(
            settings.source_table, settings.key_names, settings.view_type, settings.event_name
        )  # fmt: skip
        if settings
        else SourceTable(f"the source of {worker.function}", ("?",))
    )
    targets = [t.table for t in worker.config.targets] if worker.config else list(totals.targets)
    started, stopped = described["startDate"], described.get("stopDate")
    seconds = (stopped - started).total_seconds() if stopped else 0.0
    dry_run = bool(worker.config and worker.config.dry_run)
    return BackfillReport(source, segments, dry_run, totals, seconds, targets, item_count)
