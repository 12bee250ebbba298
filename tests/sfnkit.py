"""Step Functions for the backfill's state machine, in this process: the synthesized
definition run as Step Functions runs it, behind real botocore clients.

Step Functions cannot run here. :class:`FakeStepFunctions` answers the calls that
``stream-scavenger backfill --deployed`` makes (``DescribeStateMachine``, ``StartExecution``,
``DescribeExecution``, ``GetExecutionHistory``, ``RedriveExecution``, ``ListStateMachines``,
and Lambda's ``GetFunctionConfiguration``) through botocore's own ``before-call`` hook, as
``botocore.stub.Stubber`` does: botocore validates each request against the service model,
and each answer is validated against the operation's output shape before botocore sees it.
An execution runs the definition's states (Pass with ``States.ArrayRange``, an inline Map,
the Lambda Task, Choice, Succeed) in a thread, calling the worker's real handler, and writes
the history events Step Functions writes for them. A redrive reruns only the unfinished Map
iterations, each from the Task that did not finish, with the input it had (as AWS documents
``RedriveExecution`` for an inline Map).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.validate import validate_parameters

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/backfill-machine"
#: Execution states a redrive resumes.
STOPPED = ("FAILED", "ABORTED", "TIMED_OUT")
_names = itertools.count()


def now() -> datetime:
    return datetime.now(UTC)


class ServiceError(Exception):
    """An error answer (botocore raises it as the client's exception of that code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Stopped(Exception):
    def __init__(self, status: str, error: str = "", cause: str = "") -> None:
        super().__init__(status)
        self.status, self.error, self.cause = status, error, cause


@dataclass
class Execution:
    arn: str
    name: str
    input: str
    status: str = "RUNNING"
    start: datetime = field(default_factory=now)
    stop: datetime | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    redrive_count: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Map iteration -> (the state it goes on at, that state's input); results once done.
    iterations: dict[int, tuple[str, Any]] | None = None
    results: dict[int, Any] = field(default_factory=dict)
    thread: threading.Thread | None = None


class FakeStepFunctions:
    """One backfill state machine and its executions; ``call`` is the worker."""

    def __init__(
        self,
        definition: dict[str, Any],
        worker_arn: str,
        call: Callable[[dict[str, Any]], dict[str, Any]],
        environment: dict[str, str],
    ) -> None:
        self.name = f"Backfill{next(_names)}-StateMachine-AbC123"
        self.arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{self.name}"
        self.definition = definition
        self.worker_arn, self.call, self.environment = worker_arn, call, environment
        self.executions: dict[str, Execution] = {}
        self.calls = 0
        #: The input of each worker call that ran.
        self.inputs: list[dict[str, Any]] = []
        #: Worker call numbers (1-based, over all executions) that fail, or abort the execution.
        #: (Stopped or timed out during the call: it runs to its end, since Lambda does not
        #: stop an invocation, and its answer is lost, as on AWS.)
        self.fail_calls: set[int] = set()
        self.abort_calls: set[int] = set()
        self.timeout_calls: set[int] = set()
        #: Why a stopped execution cannot be redriven (None: it can).
        self.not_redrivable: str | None = None
        #: Events per GetExecutionHistory page at most (AWS: maxResults, up to 1000).
        self.page_limit = 1000
        #: Set to let executions make their worker calls (cleared: they wait).
        self.go = threading.Event()
        self.go.set()
        self.environment_error: str | None = None
        self._lock = threading.RLock()

    # ---- clients -------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        """A real botocore client whose calls this fake answers (never the network)."""
        client = boto3.client(
            service,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            endpoint_url="http://127.0.0.1:9",
        )
        prefix = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-parameter-build.{prefix}", self._keep_params)
        client.meta.events.register(f"before-call.{prefix}", self._answer)
        return client

    @staticmethod
    def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["fake_params"] = dict(params)

    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[Any, Any]:
        params = context["fake_params"]
        try:
            body = getattr(self, f"_op_{model.name}")(**params)
        except ServiceError as err:
            error = {"Error": {"Code": err.code, "Message": str(err)}, "ResponseMetadata": {}}
            return AWSResponse("http://127.0.0.1:9", 400, {}, None), error
        validate_parameters(body, model.output_shape)  # the answer AWS's model allows
        body["ResponseMetadata"] = {"HTTPStatusCode": 200}
        return AWSResponse("http://127.0.0.1:9", 200, {}, None), body

    # ---- operations (names as in the service model) ------------------------------------

    def _machine(self, arn: str) -> None:
        if arn != self.arn:
            raise ServiceError("StateMachineDoesNotExist", f"State Machine Does Not Exist: {arn}")

    def _execution(self, arn: str) -> Execution:
        if arn not in self.executions:
            raise ServiceError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return self.executions[arn]

    def _op_ListStateMachines(self, **_: Any) -> dict[str, Any]:
        entry = {"stateMachineArn": self.arn, "name": self.name, "type": "STANDARD",
                 "creationDate": now()}  # fmt: skip
        return {"stateMachines": [entry]}

    def _op_DescribeStateMachine(self, stateMachineArn: str) -> dict[str, Any]:
        self._machine(stateMachineArn)
        text = json.dumps(self.definition).replace('"worker"', json.dumps(self.worker_arn))
        return {
            "stateMachineArn": self.arn, "name": self.name, "status": "ACTIVE",
            "definition": text, "roleArn": ROLE, "type": "STANDARD", "creationDate": now(),
        }  # fmt: skip

    def _op_DescribeStateMachineForExecution(self, executionArn: str, **_: Any) -> Any:
        self._execution(executionArn)
        body = self._op_DescribeStateMachine(self.arn)
        kept = {k: body[k] for k in ("stateMachineArn", "name", "definition", "roleArn")}
        return {**kept, "updateDate": body["creationDate"]}

    def _op_StartExecution(self, stateMachineArn: str, input: str = "{}", **_: Any) -> Any:
        self._machine(stateMachineArn)
        name = f"execution-{len(self.executions)}"
        arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{self.name}:{name}"
        execution = Execution(arn, name, input)
        with self._lock:
            self.executions[arn] = execution
            self._event(execution, "ExecutionStarted", executionStartedEventDetails={
                "input": input, "roleArn": ROLE})  # fmt: skip
        self._launch(execution)
        return {"executionArn": arn, "startDate": execution.start}

    def _op_DescribeExecution(self, executionArn: str, **_: Any) -> dict[str, Any]:
        e = self._execution(executionArn)
        with self._lock:
            body: dict[str, Any] = {
                "executionArn": e.arn, "stateMachineArn": self.arn, "name": e.name,
                "status": e.status, "startDate": e.start, "input": e.input,
                "redriveCount": e.redrive_count,
                "redriveStatus": "REDRIVABLE" if self._redrivable(e) else "NOT_REDRIVABLE",
            }  # fmt: skip
            if e.status in STOPPED and self.not_redrivable:
                body["redriveStatusReason"] = self.not_redrivable
            optional = {"stopDate": e.stop, "output": e.output, "error": e.error,
                        "cause": e.cause}  # fmt: skip
            body.update({k: v for k, v in optional.items() if v is not None})
        return body

    def _op_GetExecutionHistory(
        self, executionArn: str, maxResults: int = 100, reverseOrder: bool = False,
        nextToken: str | None = None, **_: Any,
    ) -> dict[str, Any]:  # fmt: skip
        e = self._execution(executionArn)
        with self._lock:
            events = list(reversed(e.events) if reverseOrder else e.events)
        start, size = int(nextToken or 0), min(maxResults, self.page_limit)
        body: dict[str, Any] = {"events": events[start : start + size]}
        if start + size < len(events):
            body["nextToken"] = str(start + size)
        return body

    def _redrivable(self, e: Execution) -> bool:
        return e.status in STOPPED and not self.not_redrivable

    def _op_RedriveExecution(self, executionArn: str, **_: Any) -> dict[str, Any]:
        e = self._execution(executionArn)
        with self._lock:
            if not self._redrivable(e):
                raise ServiceError("ExecutionNotRedrivable", f"Execution is {e.status}")
            e.status, e.stop, e.error, e.cause = "RUNNING", None, None, None
            e.redrive_count += 1
            self._event(
                e,
                "ExecutionRedriven",
                executionRedrivenEventDetails={"redriveCount": e.redrive_count},
            )
        self._launch(e)
        return {"redriveDate": now()}

    def _op_GetFunctionConfiguration(self, FunctionName: str, **_: Any) -> dict[str, Any]:
        if FunctionName != self.worker_arn:
            raise ServiceError("ResourceNotFoundException", f"Function not found: {FunctionName}")
        environment: dict[str, Any] = {"Variables": dict(self.environment)}
        if self.environment_error:
            environment = {"Error": {"ErrorCode": "AccessDeniedException",
                                     "Message": self.environment_error}}  # fmt: skip
        return {"FunctionName": FunctionName.rsplit(":", 1)[-1], "FunctionArn": FunctionName,
                "Environment": environment}  # fmt: skip

    # ---- running an execution ---------------------------------------------------------

    def wait(self, arn: str, timeout: float = 120.0) -> Execution:
        execution = self.executions[arn]
        assert execution.thread is not None
        execution.thread.join(timeout)
        assert not execution.thread.is_alive(), "the execution did not finish"
        return execution

    def _event(self, e: Execution, kind: str, **details: Any) -> None:
        with self._lock:
            previous = len(e.events)
            e.events.append({"timestamp": now(), "type": kind, "id": previous + 1,
                             "previousEventId": previous, **details})  # fmt: skip

    def _launch(self, e: Execution) -> None:
        e.thread = threading.Thread(target=self._run, args=(e,), daemon=True)
        e.thread.start()

    def _run(self, e: Execution) -> None:
        try:
            if e.iterations is None:
                e.iterations = self._map_items(json.loads(e.input))
            map_state = self._map_state()
            for index in sorted(e.iterations):
                if index not in e.results:
                    e.results[index] = self._iterate(e, index, map_state["ItemProcessor"])
            output = json.dumps([e.results[i] for i in sorted(e.results)])
            with self._lock:
                e.status, e.output = "SUCCEEDED", output
                self._event(
                    e, "ExecutionSucceeded", executionSucceededEventDetails={"output": output}
                )
        except _Stopped as stopped:
            with self._lock:
                e.status, e.error, e.cause = stopped.status, stopped.error, stopped.cause
                kind = {"FAILED": "ExecutionFailed", "ABORTED": "ExecutionAborted",
                        "TIMED_OUT": "ExecutionTimedOut"}  # fmt: skip
                self._event(e, kind[stopped.status])
        finally:
            with self._lock:
                e.stop = now()

    def _map_state(self) -> dict[str, Any]:
        (state,) = [s for s in self.definition["States"].values() if s["Type"] == "Map"]
        assert state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "INLINE"
        return state

    def _map_items(self, data: Any) -> dict[int, tuple[str, Any]]:
        """The states before the Map (one Pass), then each iteration's first state and input."""
        state = self.definition["States"][self.definition["StartAt"]]
        assert state["Type"] == "Pass"
        ((key, expression),) = state["Parameters"].items()
        assert key.endswith(".$") and expression.startswith("States.ArrayRange(")
        first, last, step = (int(x) for x in expression[18:-1].split(","))
        data = {key[:-2]: list(range(first, last + 1, step))}
        map_state = self.definition["States"][state["Next"]]
        assert map_state["Type"] == "Map" and map_state["ItemsPath"].startswith("$.")
        start = map_state["ItemProcessor"]["StartAt"]
        iterations = {}
        for index, item in enumerate(data[map_state["ItemsPath"][2:]]):
            selected = {
                (k[:-2] if k.endswith(".$") else k): (item if v == "$$.Map.Item.Value" else v)
                for k, v in map_state["ItemSelector"].items()
            }
            iterations[index] = (start, selected)
        return iterations

    def _iterate(self, e: Execution, index: int, processor: dict[str, Any]) -> Any:
        assert e.iterations is not None
        name, data = e.iterations[index]
        while True:
            e.iterations[index] = (name, data)  # where a redrive goes on
            state = processor["States"][name]
            kind = state["Type"]
            if kind == "Task":
                assert state["Resource"] == "worker"
                data = self._task(e, data)
            elif kind == "Choice":
                (choice,) = state["Choices"]
                variable = choice["Variable"]
                assert variable.startswith("$.")
                matched = data[variable[2:]] is choice["BooleanEquals"]
                name = choice["Next"] if matched else state["Default"]
                continue
            elif kind == "Succeed":
                return data
            else:
                raise AssertionError(f"a state this fake does not run: {kind}")
            if state.get("End"):
                return data
            name = state["Next"]

    def _task(self, e: Execution, data: Any) -> Any:
        self.go.wait()
        with self._lock:
            self.calls += 1
            number = self.calls
        text = json.dumps(data)
        self._event(
            e,
            "TaskStateEntered",
            stateEnteredEventDetails={"name": "Scan and delete", "input": text},
        )
        self._event(e, "LambdaFunctionScheduled",
                    lambdaFunctionScheduledEventDetails={"resource": self.worker_arn,
                                                         "input": text})  # fmt: skip
        self._event(e, "LambdaFunctionStarted")
        try:
            if number in self.fail_calls:
                raise RuntimeError("the worker failed (injected)")
            self.inputs.append(data)
            answer = json.loads(json.dumps(self.call(data)))
        except Exception as err:  # noqa: BLE001 - the Task fails, and so the execution
            self._event(e, "LambdaFunctionFailed", lambdaFunctionFailedEventDetails={
                "error": type(err).__name__, "cause": str(err)})  # fmt: skip
            raise _Stopped("FAILED", "States.TaskFailed", str(err)) from None
        if number in self.abort_calls:
            raise _Stopped("ABORTED")
        if number in self.timeout_calls:
            raise _Stopped("TIMED_OUT", "States.Timeout")
        output = json.dumps(answer)
        self._event(
            e, "LambdaFunctionSucceeded", lambdaFunctionSucceededEventDetails={"output": output}
        )
        self._event(
            e,
            "TaskStateExited",
            stateExitedEventDetails={"name": "Scan and delete", "output": output},
        )
        return answer
