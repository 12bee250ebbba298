"""integ/ as CI sees it: integ-runner's snapshot mode (synthesize and compare, no deploy).

integ-runner 2.197.x reads cloud-assembly schema 53 at most (aws-cdk-lib 2.257, the pinned
``dev`` extra); the newest aws-cdk-lib is compared with snapshots of its own in
tests/test_newest_cdk.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from newest_snapshots import INTEG_RUNNER_MAX_SCHEMA, installed, schema_major

pytestmark = [
    pytest.mark.slow,  # integ-runner synthesizes every integ app: about two minutes
    pytest.mark.skipif(
        schema_major() > INTEG_RUNNER_MAX_SCHEMA,
        reason=f"aws-cdk-lib {installed('aws-cdk-lib')} writes cloud-assembly schema "
        f"{schema_major()}; integ-runner reads {INTEG_RUNNER_MAX_SCHEMA} at most "
        "(tests/test_newest_cdk.py compares this version's templates)",
    ),
]
ROOT = Path(__file__).resolve().parent.parent
INTEG_RUNNER = ROOT / "node_modules" / ".bin" / "integ-runner"
TESTS = sorted(p.name for p in (ROOT / "integ").glob("integ_*.py"))


def integ_runner(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(INTEG_RUNNER),
            "--directory",
            str(directory),
            "--language",
            "python",
            "--app",
            f"{sys.executable} {{filePath}}",
            "--test-regex",
            r"^integ_.*\.py$",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_there_are_integ_tests_with_snapshots() -> None:
    assert TESTS == [
        "integ_article.py",
        "integ_imported_source.py",
        "integ_non_key_mapping.py",
        "integ_two_targets.py",
    ]
    for name in TESTS:
        assert (ROOT / "integ" / f"{name}.snapshot" / "manifest.json").is_file(), name


def test_snapshots_match_the_synthesized_templates() -> None:
    result = integ_runner(ROOT / "integ")
    report = result.stdout + result.stderr  # integ-runner reports on stderr
    assert result.returncode == 0, report
    for name in TESTS:
        assert re.search(rf"UNCHANGED\s+{re.escape(name.removesuffix('.py'))}\b", report), report


def test_a_changed_template_fails_the_check(tmp_path: Path) -> None:
    copy = tmp_path / "integ"
    copy.mkdir()
    shutil.copy(ROOT / "integ" / "integ_article.py", copy)
    shutil.copy(ROOT / "integ" / "checks.py", copy)
    shutil.copytree(
        ROOT / "integ" / "integ_article.py.snapshot", copy / "integ_article.py.snapshot"
    )
    template_file = copy / "integ_article.py.snapshot" / "StreamScavengerIntegArticle.template.json"
    template = json.loads(template_file.read_text())
    (mapping,) = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    mapping["Properties"]["BatchSize"] = 7
    template_file.write_text(json.dumps(template))

    result = integ_runner(copy)

    assert result.returncode != 0
    report = result.stdout + result.stderr
    assert re.search(r"(?<!UN)CHANGED\s+integ_article", report), report
