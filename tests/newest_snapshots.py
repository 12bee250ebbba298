"""The integ apps' construct stacks as the newest aws-cdk-lib synthesizes them, and their snapshots.

integ-runner (2.197.x) reads cloud-assembly schema 53 at most, so it checks the integ apps on
the pinned aws-cdk-lib only. On the newest (``.venv-newest``, ``ci/newest-cdk.txt``) each
``integ/integ_*.py`` runs as it is (its IntegTest too: the venv has the matching
``aws-cdk.integ-tests-alpha``) and the templates of its test-case stacks (``integ.json``;
not the assertion stack, which is the alpha module's own code) are compared with
``tests/snapshots/aws-cdk-lib-newest/<app>/<stack>.json``.

Rewrite them with ``./run.sh snapshots`` (or ``.venv-newest/bin/python tests/newest_snapshots.py``).
"""

from __future__ import annotations

import atexit
import difflib
import functools
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
INTEG = ROOT / "integ"
SNAPSHOTS = ROOT / "tests" / "snapshots" / "aws-cdk-lib-newest"
#: Which aws-cdk-lib wrote the snapshots (compared before any template, for a clear message).
WRITTEN_BY = SNAPSHOTS / "aws-cdk-lib-version.txt"
NEWEST_PINS = ROOT / "ci" / "newest-cdk.txt"
#: The newest cloud-assembly schema integ-runner 2.197.x (package.json) reads.
INTEG_RUNNER_MAX_SCHEMA = 53
#: An asset's content hash: the function code's S3 key, its asset staging path.
_ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")


def installed(distribution: str) -> str:
    return importlib.metadata.version(distribution)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def newest_pin() -> str:
    """The aws-cdk-lib version ``ci/newest-cdk.txt`` pins."""
    (pin,) = re.findall(r"^aws-cdk-lib==(\S+)", NEWEST_PINS.read_text(), re.M)
    return str(pin)


def schema_major() -> int:
    """The cloud-assembly schema major version this aws-cdk-lib writes."""
    return version_tuple(installed("aws-cdk.cloud-assembly-schema"))[0]


def apps() -> list[Path]:
    return sorted(INTEG.glob("integ_*.py"))


def normalize(template: dict[str, Any]) -> dict[str, Any]:
    """The template without what changes when nothing the construct decides changed.

    Dropped: the bootstrap-version parameter and rule (the synthesizer's, not ours),
    ``CDKMetadata`` and its condition, and ``aws:cdk:path``/``aws:asset:*`` resource metadata
    (present when the CDK CLI synthesizes). Asset hashes (the function code's S3 key) become
    ``<asset-hash>``: the code is tested on its own and changes with every runtime edit.
    """
    text = _ASSET_HASH.sub("<asset-hash>", json.dumps(template))
    out: dict[str, Any] = json.loads(text)
    sections = {
        "Parameters": "BootstrapVersion",
        "Rules": "CheckBootstrapVersion",
        "Resources": "CDKMetadata",
        "Conditions": "CDKMetadataAvailable",
    }
    for section, name in sections.items():
        out.get(section, {}).pop(name, None)
        if section in out and not out[section]:
            del out[section]
    for resource in out.get("Resources", {}).values():
        metadata = resource.get("Metadata", {})
        for key in [k for k in metadata if k == "aws:cdk:path" or k.startswith("aws:asset:")]:
            del metadata[key]
        if "Metadata" in resource and not metadata:
            del resource["Metadata"]
    return out


def synthesize(app: Path, outdir: Path) -> Path:
    """Run one integ app with this Python into ``outdir``."""
    result = subprocess.run(
        [sys.executable, str(app)],
        cwd=app.parent,
        env={**os.environ, "CDK_OUTDIR": str(outdir)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{app.name} failed to synthesize:\n{result.stderr}")
    return outdir


@functools.cache
def synthesized(app: Path) -> Path:
    """``app`` synthesized once per test process (the snapshot test and cfn-lint share it)."""
    scratch = Path(tempfile.mkdtemp(prefix="integ-newest-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return synthesize(app, scratch / app.stem)


def construct_templates(outdir: Path) -> dict[str, dict[str, Any]]:
    """The normalized templates of the test-case stacks (``integ.json``) in ``outdir``."""
    cases = json.loads((outdir / "integ.json").read_text())["testCases"]
    stacks = sorted({stack for case in cases.values() for stack in case["stacks"]})
    return {
        stack: normalize(json.loads((outdir / f"{stack}.template.json").read_text()))
        for stack in stacks
    }


def dump(template: dict[str, Any]) -> str:
    return json.dumps(template, indent=1, sort_keys=True) + "\n"


def differences(app: str, templates: dict[str, dict[str, Any]]) -> str:
    """A unified diff of ``templates`` against the committed snapshots of ``app``; '' if equal."""
    committed = {p.stem: p.read_text() for p in sorted((SNAPSHOTS / app).glob("*.json"))}
    out: list[str] = []
    for stack in sorted(committed.keys() | templates.keys()):
        expected = committed.get(stack, "").splitlines(keepends=True)
        actual = dump(templates[stack]).splitlines(keepends=True) if stack in templates else []
        where = f"tests/snapshots/aws-cdk-lib-newest/{app}/{stack}.json"
        out += difflib.unified_diff(expected, actual, where, f"{stack}, synthesized now")
    return "".join(out)


def write_all() -> None:
    """Rewrite every snapshot from scratch (a removed stack or app leaves nothing behind)."""
    shutil.rmtree(SNAPSHOTS, ignore_errors=True)
    SNAPSHOTS.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        for app in apps():
            target = SNAPSHOTS / app.stem
            target.mkdir()
            templates = construct_templates(synthesize(app, Path(tmp) / app.stem))
            for stack, template in templates.items():
                (target / f"{stack}.json").write_text(dump(template))
            print(f"newest_snapshots: {app.name} -> {target.relative_to(ROOT)}", file=sys.stderr)
    WRITTEN_BY.write_text(installed("aws-cdk-lib") + "\n")


if __name__ == "__main__":
    if installed("aws-cdk-lib") != newest_pin():
        sys.exit(
            f"newest_snapshots: this venv has aws-cdk-lib {installed('aws-cdk-lib')}, "
            f"ci/newest-cdk.txt pins {newest_pin()}: run it with .venv-newest/bin/python"
        )
    write_all()
