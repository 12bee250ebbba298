"""`pip install` of the repo gives a working library, with the Lambda's code inside the wheel."""

from __future__ import annotations

import json
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds the wheel and installs it in a new venv
ROOT = Path(__file__).resolve().parent.parent
RUNTIME = {
    "__init__.py",
    "config.py",
    "deleter.py",
    "handler.py",
    "logs.py",
    "metrics.py",
    "records.py",
}

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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # A stray cache next to the runtime must not reach the wheel or the asset.
    (ROOT / "src/stream_scavenger/runtime/scavenger/__pycache__").mkdir(exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("stream_scavenger-*.whl")
    return built


def test_wheel_ships_the_runtime_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    runtime = {n.rsplit("/", 1)[1] for n in names if n.startswith("stream_scavenger/runtime/")}
    assert runtime == RUNTIME
    assert "stream_scavenger/py.typed" in names
    assert not [
        n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("tests/")
    ]
    metadata = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    )
    requires = sorted(
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    )
    assert [r.split(">")[0].split("<")[0] for r in requires] == ["aws-cdk-lib", "constructs"]


def test_installed_wheel_synthesizes_a_user_app(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    # aws-cdk-lib comes from the test environment, so nothing is downloaded again.
    (next((env_dir / "lib").glob("python3*/site-packages")) / "dev.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    app_dir = tmp_path / "user-app"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(APP)

    result = subprocess.run(
        [python, "app.py"], cwd=app_dir, check=True, capture_output=True, text=True
    )

    library, demo_app = result.stdout.split()[-2:]
    assert library.startswith(str(env_dir))  # the installed copy, not the source tree
    assert demo_app.startswith(str(env_dir)) and demo_app.endswith("local/example_app.py")
    template = json.loads((app_dir / "cdk.out" / "UserApp.template.json").read_text())
    (function,) = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
    ]
    asset = (
        app_dir
        / "cdk.out"
        / ("asset." + function["Properties"]["Code"]["S3Key"].removesuffix(".zip"))
    )
    assert {p.name for p in (asset / "scavenger").iterdir()} == RUNTIME
