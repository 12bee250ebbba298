"""The construct on the newest aws-cdk-lib (``./run.sh test-newest``, ``.venv-newest``).

A plain ``pip install stream-scavenger`` brings the newest aws-cdk-lib, while the main venv
pins the older one integ-runner reads. Here: the integ apps' templates against snapshots of
their own, cdk-nag registered as a policy-validation plugin (as its README says; it needs
aws-cdk-lib 2.258+), and the repository's CDK CLI reading what this aws-cdk-lib writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks
from newest_snapshots import (
    SNAPSHOTS,
    WRITTEN_BY,
    apps,
    construct_templates,
    differences,
    installed,
    newest_pin,
    synthesized,
    version_tuple,
)
from test_compliance import customer_keys, defaults, everything_on, several_targets

from stream_scavenger import StreamScavenger, compliance

ROOT = Path(__file__).resolve().parent.parent
CDK_LIB = installed("aws-cdk-lib")
on_newest = pytest.mark.skipif(
    newest_pin() != CDK_LIB,
    reason=f"aws-cdk-lib {CDK_LIB} here; these snapshots are for {newest_pin()} "
    "(ci/newest-cdk.txt): ./run.sh test-newest",
)
plugins_work = pytest.mark.skipif(
    version_tuple(CDK_LIB) < (2, 258),
    reason=f"aws-cdk-lib {CDK_LIB} gives policy-validation plugins no construct tree "
    "(cdk-nag 3 does nothing when registered; 2.258+): ./run.sh test-newest",
)


@on_newest
@pytest.mark.slow  # one subprocess and synthesis per integ app, ~10 s each
@pytest.mark.parametrize("app", apps(), ids=lambda p: p.stem)
def test_integ_templates_match_the_newest_snapshots(app: Path) -> None:
    written_by = WRITTEN_BY.read_text().strip() if WRITTEN_BY.is_file() else "nothing"
    assert written_by == CDK_LIB, (
        f"the snapshots were written by aws-cdk-lib {written_by}, this is {CDK_LIB}: "
        "rewrite them with ./run.sh snapshots and review the diff"
    )
    diff = differences(app.stem, construct_templates(synthesized(app)))
    assert not diff, f"{app.name} changed (./run.sh snapshots rewrites the snapshots):\n{diff}"


def test_there_is_a_newest_snapshot_for_each_integ_app() -> None:
    assert [p.stem for p in apps()] == sorted(p.name for p in SNAPSHOTS.iterdir() if p.is_dir())


def test_a_changed_or_missing_stack_is_a_diff() -> None:
    """The comparison is not vacuous: one changed property, or a stack gone, shows."""
    stacks = {
        p.stem: json.loads(p.read_text()) for p in (SNAPSHOTS / "integ_article").glob("*.json")
    }
    assert differences("integ_article", stacks) == ""
    (template,) = stacks.values()
    (mapping,) = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    mapping["Properties"]["BatchSize"] = 7
    changed = differences("integ_article", stacks).splitlines()
    assert [line for line in changed if line.startswith("+") and '"BatchSize": 7' in line]
    assert differences("integ_article", {}).count("\n-") > 10


def nag_synth(build: Callable[[cdk.Stack], StreamScavenger], tweak: Any = None) -> str:
    """Synthesize ``build`` with cdk-nag registered the documented way; '' or the failure."""
    with tempfile.TemporaryDirectory() as out:
        app = cdk.App(outdir=out)
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
        scavenger = build(cdk.Stack(app, "Nag"))
        if tweak:
            tweak(scavenger)
        try:
            app.synth()
        except RuntimeError as error:  # ValidationFailed: the report is in the outdir
            report = Path(out, "validation-report.json").read_text()
            return f"{error}\n{report}"
        report = json.loads(Path(out, "validation-report.json").read_text())
        return "" if not report["pluginReports"] else json.dumps(report, indent=1)


@plugins_work
@pytest.mark.parametrize(
    "build",
    [defaults, customer_keys, everything_on, several_targets],
    ids=["defaults", "customer-keys", "everything-on", "several-targets"],
)
def test_cdk_nag_plugin_finds_nothing_unacknowledged(build: Any) -> None:
    assert nag_synth(build) == ""


@plugins_work
def test_cdk_nag_plugin_fails_synthesis_on_a_wildcard_action() -> None:
    """The control: the plugin did run, and the acknowledgments cover only what they say."""

    def wildcard(scavenger: StreamScavenger) -> None:
        scavenger.function.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:*"], resources=["arn:aws:s3:::bucket/*"])
        )

    failure = nag_synth(defaults, wildcard)
    assert "ValidationFailed" in failure
    assert "AwsSolutions-IAM5[Action::s3:*]" in failure


@plugins_work
def test_cdk_nag_plugin_reports_what_the_acknowledgments_cover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compliance, "acknowledge", lambda scope, *acks: None)
    failure = nag_synth(defaults)
    assert "AwsSolutions-IAM5[Resource::*]" in failure
    assert "AwsSolutions-SQS3" in failure


CDK_CLI = ROOT / "node_modules" / ".bin" / "cdk"


@pytest.mark.slow  # the CDK CLI starts the app in a subprocess: ~20 s
def test_the_repositorys_cdk_cli_synthesizes_the_example(tmp_path: Path) -> None:
    """``npx cdk`` in the repository reads the assembly this aws-cdk-lib writes."""
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    version = subprocess.run([CDK_CLI, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.split()[0] == pinned
    env = {
        **os.environ,
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
    }
    env.pop("AWS_PROFILE", None)
    result = subprocess.run(
        [
            str(CDK_CLI),
            "synth",
            "--app",
            f"{sys.executable} {ROOT / 'examples' / 'app.py'}",
            "--output",
            str(tmp_path / "cdk.out"),
            "--no-notices",
            "--quiet",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((tmp_path / "cdk.out" / "manifest.json").read_text())
    assert manifest["artifacts"]["StreamScavengerExample"]["type"] == "aws:cloudformation:stack"
    assert (tmp_path / "cdk.out" / "StreamScavengerExample.template.json").is_file()
