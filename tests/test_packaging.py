"""The release artifacts: an sdist that builds the same wheel as the repository, and the sdist
installed with plain `pip install` (no extras) into a fresh venv gives a working library.

Installing the sdist builds that same wheel and installs it, so this is also the plain install
of the wheel; the wheel itself, with its ``[local]`` extra, is installed by test_pip_user.py
(one venv each: installing aws-cdk-lib into a venv takes about 30 s here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.metadata import Metadata

import stream_scavenger

pytestmark = pytest.mark.slow  # builds the artifacts and installs each in a new venv
ROOT = Path(__file__).resolve().parent.parent
#: The Lambda's code: the runtime's modules, and nothing else (no caches, no tests).
RUNTIME = {p.name for p in (ROOT / "src/stream_scavenger/runtime/scavenger").glob("*.py")}
#: The sdist's files besides the package sources: what building the wheel needs, and the docs.
SDIST_EXTRAS = {
    ".gitignore",  # hatchling always adds it (its excludes apply to the sdist's own builds)
    "API.md",
    "CHANGELOG.md",
    "LICENSE",
    "PKG-INFO",
    "README.md",
    "examples/app.py",
    "pyproject.toml",
}
URLS = {"Homepage", "Documentation", "Changelog", "Issues"}

APP = """
import aws_cdk as cdk
from aws_cdk import aws_dynamodb as ddb
import stream_scavenger
from stream_scavenger import StreamScavenger
app = cdk.App(outdir="cdk.out")
stack = cdk.Stack(app, "UserApp")
key = dict(partition_key=ddb.Attribute(name="id", type=ddb.AttributeType.STRING))
src, dst = ddb.Table(stack, "Src", **key), ddb.Table(stack, "Dst", **key)
StreamScavenger(stack, "S", source_table=src, target_table=dst)
app.synth()
print(stream_scavenger.__file__)
from stream_scavenger.local.scenario import example_app
print(example_app())
"""


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path  # built from the repository
    wheel_from_sdist: Path  # built from the unpacked sdist, as `pip install <sdist>` does


def _run(*command: str | Path, **options: Any) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, fail with the end of its output (build and pip say why)."""
    result = subprocess.run(command, capture_output=True, text=True, **options)
    output = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{output}"
    return result


def _build(source: Path, outdir: Path, *targets: str) -> None:
    _run(sys.executable, "-m", "build", *targets, "--no-isolation", "--outdir", outdir, source)


def _files(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _sdist_files(sdist: Path) -> dict[str, bytes]:
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.isfile()]
        # Paths below the one top directory, stream_scavenger-<version>/.
        return {
            m.name.split("/", 1)[1]: archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in members
        }


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    # A stray cache next to the runtime must not reach the sdist, the wheel or the asset.
    (ROOT / "src/stream_scavenger/runtime/scavenger/__pycache__").mkdir(exist_ok=True)
    _build(ROOT, out, "--sdist", "--wheel")
    (sdist,) = out.glob("stream_scavenger-*.tar.gz")
    (wheel,) = out.glob("stream_scavenger-*.whl")

    unpacked = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(sdist) as archive:
        archive.extractall(unpacked, filter="data")
    (source,) = unpacked.iterdir()
    from_sdist = tmp_path_factory.mktemp("from-sdist")
    _build(source, from_sdist, "--wheel")
    (wheel_from_sdist,) = from_sdist.glob("stream_scavenger-*.whl")
    return Dist(sdist, wheel, wheel_from_sdist)


def test_wheel_ships_the_runtime_and_nothing_else(dist: Dist) -> None:
    names = zipfile.ZipFile(dist.wheel).namelist()
    runtime = {n.rsplit("/", 1)[1] for n in names if n.startswith("stream_scavenger/runtime/")}
    assert runtime == RUNTIME and {"handler.py", "config.py"} <= RUNTIME
    assert "stream_scavenger/py.typed" in names
    assert "stream_scavenger/local/example_app.py" in names
    assert not [
        n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("tests/")
    ]
    metadata = (
        zipfile.ZipFile(dist.wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    )
    requires = sorted(
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    )
    assert [r.split(">")[0].split("<")[0] for r in requires] == ["aws-cdk-lib", "constructs"]


def test_the_wheel_built_from_the_sdist_is_the_wheel_built_from_the_repository(
    dist: Dist,
) -> None:
    direct, from_sdist = _files(dist.wheel), _files(dist.wheel_from_sdist)
    assert sorted(from_sdist) == sorted(direct)
    assert from_sdist == direct  # every file's bytes, RECORD included


def test_sdist_holds_what_the_wheel_needs_and_nothing_else(dist: Dist) -> None:
    files = _sdist_files(dist.sdist)
    package = {
        "src/" + name
        for name in _files(dist.wheel)
        if name.startswith("stream_scavenger/") and name != "stream_scavenger/local/example_app.py"
    }
    # Exact: no tests, node_modules, venvs, cdk.out or caches.
    assert set(files) == package | SDIST_EXTRAS
    assert files["examples/app.py"] == (ROOT / "examples/app.py").read_bytes()
    assert files["pyproject.toml"] == (ROOT / "pyproject.toml").read_bytes()


def test_license_is_the_apache_text_in_both_artifacts(dist: Dist) -> None:
    text = (ROOT / "LICENSE").read_bytes()
    assert b"Apache License\n                           Version 2.0, January 2004" in text
    assert b"END OF TERMS AND CONDITIONS" in text
    assert _sdist_files(dist.sdist)["LICENSE"] == text
    version = stream_scavenger.__version__
    assert _files(dist.wheel)[f"stream_scavenger-{version}.dist-info/licenses/LICENSE"] == text


@pytest.mark.parametrize("artifact", ["sdist", "wheel"])
def test_metadata_is_complete_and_valid(dist: Dist, artifact: str) -> None:
    if artifact == "sdist":
        raw = _sdist_files(dist.sdist)["PKG-INFO"]
    else:
        (raw,) = [v for k, v in _files(dist.wheel).items() if k.endswith(".dist-info/METADATA")]
    metadata = Metadata.from_email(raw, validate=True)  # raises on any invalid field

    assert str(metadata.version) == stream_scavenger.__version__  # one definition of it
    assert metadata.name == "stream-scavenger"
    assert metadata.license_expression == "Apache-2.0"
    assert metadata.license_files == ["LICENSE"]
    assert str(metadata.requires_python) == ">=3.11"
    assert metadata.author == "stream-scavenger contributors"
    urls = metadata.project_urls or {}
    assert set(urls) == URLS
    assert all(url.startswith("https://github.com/") for url in urls.values())
    classifiers = metadata.classifiers or []
    # PEP 639: a license expression replaces the license classifiers.
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert "Development Status :: 3 - Alpha" in classifiers
    assert metadata.description_content_type == "text/markdown"


@pytest.fixture(scope="module")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the sdist installed by plain `pip install` (dependencies from the
    index, nothing from the test environment); its directory."""
    env_dir = tmp_path_factory.mktemp("venv-sdist")
    venv.create(env_dir, with_pip=True)
    _run(env_dir / "bin/python", "-m", "pip", "install", "-q", dist.sdist, env=_clean_env())
    return env_dir


def _clean_env() -> dict[str, str]:
    """This process's environment without what would point Python at the repository."""
    return {
        k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    }


def test_installed_artifact_synthesizes_a_user_app(installed: Path, tmp_path: Path) -> None:
    python = installed / "bin/python"
    app_dir = tmp_path / "user-app"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(APP)

    result = _run(python, "app.py", cwd=app_dir, env=_clean_env())

    library, demo_app = result.stdout.split()[-2:]
    assert library.startswith(str(installed))  # the installed copy, not the source tree
    assert demo_app.startswith(str(installed)) and demo_app.endswith("local/example_app.py")
    resources = json.loads((app_dir / "cdk.out" / "UserApp.template.json").read_text())["Resources"]
    ((function_id, function),) = [
        (k, r) for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function"
    ]
    (mapping,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert mapping["Properties"]["FunctionName"] == {"Ref": function_id}
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    asset = (
        app_dir
        / "cdk.out"
        / ("asset." + function["Properties"]["Code"]["S3Key"].removesuffix(".zip"))
    )
    assert {p.name for p in (asset / "scavenger").iterdir()} == RUNTIME


def test_installed_version_is_the_package_version(installed: Path) -> None:
    result = _run(
        installed / "bin/python", "-m", "pip", "show", "stream-scavenger", env=_clean_env()
    )
    assert f"Version: {stream_scavenger.__version__}" in result.stdout.splitlines()
    assert (installed / "bin/stream-scavenger").exists()
