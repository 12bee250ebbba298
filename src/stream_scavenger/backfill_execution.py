"""``stream-scavenger backfill --deployed``: run the backfill state machine and follow it.

Given the state machine that ``backfill=True`` deploys, start an execution. Given one of its
executions, follow it while it runs; redrive it when it failed, was aborted or timed out
(Step Functions then reruns only the unfinished segments, each from the answer of its last
worker call: a resume); report it when it succeeded. Progress comes from the execution's
history, where each worker call's answer carries its segment's totals so far.
"""

from __future__ import annotations

import json
import re
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
#: How :func:`start_or_resume` says the execution cannot go on.
NOT_REDRIVABLE = "not redrivable"
#: History events that start and end a run of the execution (a redrive starts another).
_RUN_STARTS = ("ExecutionStarted", "ExecutionRedriven")
_RUN_ENDS = ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut")


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
    #: Seconds the execution ran, over its runs (a redriven one sat still between them).
    running_s: float = 0.0
    _run_started: Any = None

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
            self._take(event)
            self.last_id = max(self.last_id, event["id"])

    def _take(self, event: Mapping[str, Any]) -> None:
        kind = event["type"]
        if kind in _RUN_STARTS:
            self._run_started = event["timestamp"]
        elif kind in _RUN_ENDS and self._run_started is not None:
            self.running_s += (event["timestamp"] - self._run_started).total_seconds()
            self._run_started = None
        details = event.get("lambdaFunctionSucceededEventDetails") or {}
        if kind == "LambdaFunctionSucceeded" and "output" in details:
            self.take_answer(json.loads(details["output"]))

    def take_answer(self, answer: Any) -> None:
        """A worker's answer, as its segment's latest (anything else is passed over)."""
        if isinstance(answer, dict) and {BACKFILL_SEGMENT, BACKFILL_TOTALS} <= set(answer):
            self.segments[int(answer[BACKFILL_SEGMENT])] = answer

    @property
    def scanned(self) -> int:
        """Items the segments have scanned so far."""
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


def worker_of(sfn: Any, lam: Any, machine_arn: str, execution_arn: str | None) -> Worker:
    """The function the state machine calls and what it scans (for the progress bar's total
    and the summary; without them the backfill is still followed). An execution's own
    definition is read (a redrive runs the definition it started with); one not shaped as a
    stream-scavenger backfill is refused before anything is started."""
    if execution_arn:
        described = sfn.describe_state_machine_for_execution(executionArn=execution_arn)
    else:
        described = sfn.describe_state_machine(stateMachineArn=machine_arn)
    definition = json.loads(described["definition"])
    functions = _lambda_functions(definition)
    if len(functions) != 1 or not _maps_segments(definition):
        raise DeployedError(
            f"{machine_arn} is not a stream-scavenger backfill (StreamScavenger(backfill=...) "
            "deploys a Map over scan segments whose one Task calls a function)"
        )
    worker = Worker(functions[0])
    try:
        configuration = lam.get_function_configuration(FunctionName=worker.function)
        environment = configuration.get("Environment") or {}
        if "Error" in environment:
            raise ConfigError(environment["Error"].get("Message", "encrypted"))
        variables = environment.get("Variables") or {}
        worker.settings = BackfillConfig.from_env(variables)
        worker.config = ScavengerConfig.from_env(variables)
    except Exception as err:  # noqa: BLE001 - only the total and the names are missing
        worker.why_unknown = f"cannot read the worker {worker.function}'s configuration: {err}"
    return worker


def _lambda_functions(states_language: Mapping[str, Any]) -> list[str]:
    """The functions Tasks call directly (``Resource`` a function ARN, as the construct's)."""
    found: list[str] = []
    for state in states_language.get("States", {}).values():
        resource = str(state.get("Resource", ""))
        if state.get("Type") == "Task" and re.match(
            r"arn:[^:]+:lambda:[^:]*:\d*:function:", resource
        ):
            found.append(resource)
        for nested in ("ItemProcessor", "Iterator"):
            if nested in state:
                found += _lambda_functions(state[nested])
    return sorted(set(found))


def _maps_segments(states_language: Mapping[str, Any]) -> bool:
    """A Map whose items are the segment numbers the worker takes."""
    return any(
        state.get("Type") == "Map"
        and f"{BACKFILL_SEGMENT}.$" in (state.get("ItemSelector") or {})
        and BACKFILL_TOTAL_SEGMENTS in (state.get("ItemSelector") or {})
        for state in states_language.get("States", {}).values()
    )


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
        return execution_arn, f"{NOT_REDRIVABLE} ({status.lower()}: {reason})"
    sfn.redrive_execution(executionArn=execution_arn)
    count = int(described.get("redriveCount", 0))
    deadline = time.monotonic() + REDRIVE_SETTLE_S
    while time.monotonic() < deadline:
        now = sfn.describe_execution(executionArn=execution_arn)
        if int(now.get("redriveCount", 0)) > count or now["status"] != status:
            return execution_arn, (
                f"redriven ({status.lower()} before): the unfinished segments go on from the "
                "answer of their last worker call"
            )
        time.sleep(1.0)
    return execution_arn, f"redrive requested ({status.lower()} before), not yet visible"


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
            answers.take_answer(answer)
    totals = PageResult()
    for answer in answers.segments.values():
        totals.add(PageResult.from_json(answer[BACKFILL_TOTALS]))
    segments = max([int(a[BACKFILL_TOTAL_SEGMENTS]) for a in answers.segments.values()] or [0])
    source = (
        SourceTable.of(worker.settings)
        if worker.settings
        else SourceTable(f"the source of {worker.function}", ("?",))
    )
    targets = [t.table for t in worker.config.targets] if worker.config else list(totals.targets)
    seconds = answers.running_s
    dry_run = bool(worker.config and worker.config.dry_run)
    return BackfillReport(source, segments, dry_run, totals, seconds, targets, item_count)
