"""The stream-scavenger command line: the main job, the user's app, one invocation, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from streamevents import record

from stream_scavenger.cli import main
from stream_scavenger.local.check import example_app, synthesize

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
    assembly: Path, ddb_local: Any, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --table, nothing is created or filled: the existing stream is drained."""
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
