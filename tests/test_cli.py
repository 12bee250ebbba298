"""The stream-scavenger command line: the main job, the user's app, one invocation, errors."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
from shardedstreams import ShardedStreams
from streamevents import record

from stream_scavenger import cli
from stream_scavenger.cli import main
from stream_scavenger.local.check import example_app, synthesize
from stream_scavenger.local.dynamodb_local import local_client

pytestmark = pytest.mark.ddb
ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "stream-scavenger"


@pytest.fixture(scope="module")
def assembly() -> Path:
    return synthesize([sys.executable, str(example_app())])


def example_table_ids(assembly: Path) -> tuple[str, str]:
    """Logical IDs of the example app's Messages and Staging tables."""
    template = json.loads(next(assembly.glob("*.template.json")).read_text())
    tables = [k for k, r in template["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"]
    (messages_id,) = [t for t in tables if t.startswith("Messages")]
    (staging_id,) = [t for t in tables if t.startswith("Staging")]
    return messages_id, staging_id


def create_example_table(ddb: Any, name: str, stream: bool = False) -> None:
    """A table keyed like the example app's (messageId S, createdAt N)."""
    extra = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}}
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "messageId", "KeyType": "HASH"},
            {"AttributeName": "createdAt", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "messageId", "AttributeType": "S"},
            {"AttributeName": "createdAt", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        **(extra if stream else {}),
    )


def summary_row(out: str) -> list[str]:
    (header, row) = [line.split() for line in out.strip().splitlines()[-2:]]
    assert header[0] == "scavenger"
    return row


def test_demo_is_the_main_job_end_to_end() -> None:
    """As the README's command runs it: its own DynamoDB Local, the bundled app, a summary."""
    result = subprocess.run(
        [str(SCRIPT), "demo", "--records", "120"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    row = summary_row(result.stdout)
    records, deleted, unrelated, requests = row[1], row[2], row[3], row[4]
    assert (records, deleted, unrelated) == ("120", "120/120", "120/120")
    assert requests == "5"  # ceil(120 / 25)
    assert row[-1] == "OK"


def test_run_with_a_cloud_assembly(
    assembly: Path, ddb_local: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "--cloud-assembly",
            str(assembly),
            "--records",
            "60",
            "--endpoint-url",
            ddb_local.endpoint_url,
        ]
    )
    assert code == 0
    row = summary_row(capsys.readouterr().out)
    assert row[1:4] == ["60", "60/60", "60/60"] and row[-1] == "OK"


def test_run_with_an_app_command(ddb_local: Any, capsys: pytest.CaptureFixture[str]) -> None:
    app = f"{sys.executable} {ROOT / 'examples' / 'app.py'}"
    assert (
        main(["run", "--app", app, "--records", "30", "--endpoint-url", ddb_local.endpoint_url])
        == 0
    )
    assert summary_row(capsys.readouterr().out)[-1] == "OK"


LATEST_APP = """
import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb, aws_lambda as lambda_
from stream_scavenger import StreamScavenger

app = cdk.App()
stack = cdk.Stack(app, "Latest")
key = {"partition_key": dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING)}
source, target = dynamodb.Table(stack, "Source", **key), dynamodb.Table(stack, "Target", **key)
StreamScavenger(stack, "Scavenger", source_table=source, target_table=target,
                starting_position=lambda_.StartingPosition.LATEST)
app.synth()
"""


def test_run_checks_an_app_whose_mapping_starts_at_latest(
    tmp_path: Path, ddb_local: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check's tables are new: a mapping created with them at LATEST sees every record."""
    app = tmp_path / "latest_app.py"
    app.write_text(LATEST_APP)
    command = ["run", "--app", f"{sys.executable} {app}", "--records", "20"]
    assert main([*command, "--endpoint-url", ddb_local.endpoint_url]) == 0
    row = summary_row(capsys.readouterr().out)
    assert row[1:3] == ["20", "20/20"] and row[-1] == "OK"


def test_invoke_prints_the_functions_response(
    assembly: Path, tmp_path: Path, ddb_local: Any, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    staging = "invoke-staging"
    _, staging_id = example_table_ids(assembly)
    create_example_table(ddb, staging)
    ddb.put_item(TableName=staging, Item={"messageId": {"S": "m1"}, "createdAt": {"N": "5"}})
    event_file = tmp_path / "event.json"
    event_file.write_text(
        json.dumps({"Records": [record("INSERT", {"messageId": "m1", "createdAt": 5})]})
    )

    code = main(
        [
            "invoke",
            "--event",
            str(event_file),
            "--cloud-assembly",
            str(assembly),
            "--endpoint-url",
            ddb_local.endpoint_url,
            "--table",
            f"{staging_id}={staging}",
        ]
    )

    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"batchItemFailures": []}
    assert "Item" not in ddb.get_item(
        TableName=staging, Key={"messageId": {"S": "m1"}, "createdAt": {"N": "5"}}
    )


def test_not_a_cloud_assembly_is_a_setup_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--cloud-assembly", str(tmp_path)]) == 2
    assert "not a cloud assembly" in capsys.readouterr().err


def test_an_assembly_without_a_scavenger_is_a_setup_error(
    tmp_path: Path, ddb_local: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "empty_app.py"
    app.write_text("import aws_cdk as cdk\napp = cdk.App()\ncdk.Stack(app, 'Empty')\napp.synth()\n")
    assert (
        main(["run", "--app", f"{sys.executable} {app}", "--endpoint-url", ddb_local.endpoint_url])
        == 2
    )
    assert "no stream-scavenger function found" in capsys.readouterr().err


def test_an_unreachable_endpoint_is_a_setup_error(
    assembly: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["run", "--cloud-assembly", str(assembly), "--endpoint-url", "http://127.0.0.1:9"])
        == 2
    )
    assert "does not answer" in capsys.readouterr().err


def test_a_missing_java_runtime_is_named(assembly: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(bin_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "stream_scavenger.cli", "run", "--cloud-assembly", str(assembly)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    assert "java not found" in result.stderr and "Java 17" in result.stderr
    assert shutil.which(
        "java"
    )  # the suite itself has one: this checked the message, not the machine


@pytest.mark.parametrize("command", ["demo", "run", "invoke"])
def test_help_has_examples_and_exit_codes(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "exit status:" in text


def test_run_drains_existing_tables_on_an_endpoint(
    assembly: Path, ddb_local: Any, ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """With --table, nothing is created or filled: the existing stream is drained."""
    monkeypatch.chdir(tmp_path)  # where its checkpoint goes
    messages_id, staging_id = example_table_ids(assembly)
    create_example_table(ddb, "existing-messages", stream=True)
    create_example_table(ddb, "existing-staging")
    for i in range(7):
        item = {"messageId": {"S": f"e{i}"}, "createdAt": {"N": str(i)}}
        ddb.put_item(TableName="existing-staging", Item=item)
        if i < 5:
            ddb.put_item(TableName="existing-messages", Item=item)

    code = main([
        "run", "--cloud-assembly", str(assembly), "--endpoint-url", ddb_local.endpoint_url,
        "--table", f"{messages_id}=existing-messages", "--table", f"{staging_id}=existing-staging",
    ])  # fmt: skip

    assert code == 0
    out = capsys.readouterr().out
    assert "records read: 5" in out and "keys deleted: 5" in out
    left = ddb.scan(TableName="existing-staging")["Items"]
    assert sorted(i["messageId"]["S"] for i in left) == ["e5", "e6"]


# ---- run --table: every record delivered, what was given up on kept, resumable ----------------

_tables = itertools.count()


def existing_tables(ddb: Any, assembly: Path, count: int) -> dict[str, Any]:
    """Fresh messages (streamed) and staging tables with ``count`` matching items each."""
    messages_id, staging_id = example_table_ids(assembly)
    n = next(_tables)
    messages, staging = f"drain{n}-messages", f"drain{n}-staging"
    create_example_table(ddb, messages, stream=True)
    create_example_table(ddb, staging)
    for i in range(count):
        item = {"messageId": {"S": f"d{i}"}, "createdAt": {"N": str(i)}}
        ddb.put_item(TableName=staging, Item=item)
        ddb.put_item(TableName=messages, Item=item)
    return {
        "messages": messages,
        "staging": staging,
        "stream_arn": ddb.describe_table(TableName=messages)["Table"]["LatestStreamArn"],
        "args": ["--table", f"{messages_id}={messages}", "--table", f"{staging_id}={staging}"],
    }


def drain(assembly: Path, ddb_local: Any, tables: dict[str, Any], *extra: str) -> int:
    return main([
        "run", "--cloud-assembly", str(assembly), "--endpoint-url", ddb_local.endpoint_url,
        *tables["args"], *extra,
    ])  # fmt: skip


def left_in(ddb: Any, table: str) -> int:
    return int(ddb.scan(TableName=table, Select="COUNT")["Count"])


def with_gaps(monkeypatch: pytest.MonkeyPatch, stream_arn: str, gaps: dict[int, int]) -> None:
    """The CLI's streams client, with empty pages served before some records."""
    real = cli.local_client

    def client(service: str, url: str) -> Any:
        made = real(service, url)
        if service != "dynamodbstreams":
            return made
        return ShardedStreams.as_it_is(made, stream_arn, records_per_page=2, gaps=gaps)

    monkeypatch.setattr(cli, "local_client", client)


def test_run_table_reads_past_empty_pages(
    assembly: Path, ddb_local: Any, ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    tables = existing_tables(ddb, assembly, 7)
    with_gaps(monkeypatch, tables["stream_arn"], {2: 4, 4: 1})
    assert drain(assembly, ddb_local, tables) == 0
    assert "records read: 7" in capsys.readouterr().out
    assert left_in(ddb, tables["staging"]) == 0


def test_run_table_never_exits_0_with_records_left_in_the_stream(
    assembly: Path, ddb_local: Any, ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Five empty pages in a row end an open shard: the check after the run names what is left."""
    monkeypatch.chdir(tmp_path)
    tables = existing_tables(ddb, assembly, 7)
    with_gaps(monkeypatch, tables["stream_arn"], {4: 5})
    assert drain(assembly, ddb_local, tables) == 1
    out = capsys.readouterr().out
    description = ddb_local.client("dynamodbstreams").describe_stream(
        StreamArn=tables["stream_arn"]
    )
    (shard,) = description["StreamDescription"]["Shards"]
    assert f"left in the stream: shard {shard['ShardId']}: 3 record(s)" in out
    assert left_in(ddb, tables["staging"]) == 3


def test_run_table_appends_what_it_gave_up_on_to_a_file(
    assembly: Path, ddb_local: Any, ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Staging named as a table that does not exist: every delete fails, every record is
    given up on, and Lambda's on-failure messages land in the file."""
    monkeypatch.chdir(tmp_path)
    tables = existing_tables(ddb, assembly, 5)
    tables["args"][-1] = tables["args"][-1].replace("-staging", "-missing")
    failures = tmp_path / "failures.jsonl"
    assert drain(assembly, ddb_local, tables, "--on-failure-file", str(failures)) == 1
    messages = [json.loads(line) for line in failures.read_text().splitlines()]
    assert sum(m["DDBStreamBatchInfo"]["batchSize"] for m in messages) == 5
    assert {m["DDBStreamBatchInfo"]["streamArn"] for m in messages} == {tables["stream_arn"]}
    assert f"appended to {failures}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def sqs_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_run_table_sends_what_it_gave_up_on_to_a_queue_redrive_can_replay(
    assembly: Path, ddb_local: Any, ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    sqs_endpoint: str, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    tables = existing_tables(ddb, assembly, 5)
    real_staging = tables["args"][-1]
    tables["args"][-1] = real_staging.replace("-staging", "-missing")
    sqs = local_client("sqs", sqs_endpoint)
    queue_url = sqs.create_queue(QueueName=f"run-dlq-{tables['messages']}")["QueueUrl"]
    code = drain(
        assembly, ddb_local, tables,
        "--on-failure-queue-url", queue_url, "--sqs-endpoint-url", sqs_endpoint,
    )  # fmt: skip
    assert code == 1
    assert f"sent to {queue_url}" in capsys.readouterr().out

    tables["args"][-1] = real_staging
    code = main([
        "redrive", "--queue-url", queue_url, "--cloud-assembly", str(assembly), *tables["args"],
        "--endpoint-url", ddb_local.endpoint_url, "--sqs-endpoint-url", sqs_endpoint,
    ])  # fmt: skip
    assert code == 0
    assert left_in(ddb, tables["staging"]) == 0


def test_run_table_resumes_from_its_checkpoint_by_default(
    assembly: Path, ddb_local: Any, ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    tables = existing_tables(ddb, assembly, 5)
    assert drain(assembly, ddb_local, tables) == 0
    out = capsys.readouterr().out
    (saved,) = (tmp_path / ".stream-scavenger").iterdir()
    assert f"checkpoint: {saved}" in out and "records read: 5" in out

    assert drain(assembly, ddb_local, tables) == 0  # nothing new: nothing read again
    assert "records read: 0" in capsys.readouterr().out
    item = {"messageId": {"S": "late"}, "createdAt": {"N": "99"}}
    ddb.put_item(TableName=tables["staging"], Item=item)
    ddb.put_item(TableName=tables["messages"], Item=item)
    assert drain(assembly, ddb_local, tables) == 0
    assert "records read: 1" in capsys.readouterr().out
    assert left_in(ddb, tables["staging"]) == 0

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert drain(assembly, ddb_local, tables, "--no-checkpoint") == 0
    assert "records read: 6" in capsys.readouterr().out and not any(elsewhere.iterdir())
    chosen = tmp_path / "chosen.json"
    assert drain(assembly, ddb_local, tables, "--checkpoint", str(chosen)) == 0
    assert "records read: 6" in capsys.readouterr().out
    assert tables["stream_arn"] in json.loads(chosen.read_text())


def test_a_checkpoint_without_table_is_a_usage_error(
    assembly: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--cloud-assembly", str(assembly), "--checkpoint", "cp.json"]) == 2
    assert "--checkpoint works with --table" in capsys.readouterr().err
