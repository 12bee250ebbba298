"""Lint, format and strict typing of the library, as part of the test command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "src", "tests", "examples", "integ", "scripts", "benchmarks"],
        ["ruff", "format", "--check", "src", "tests", "examples", "integ", "scripts", "benchmarks"],
        ["mypy"],
        ["scripts/gen_api.py", "--check"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict", "api-md-up-to-date"],
)
def test_static_check_passes(command: list[str]) -> None:
    argv = (
        [sys.executable, *command]
        if command[0].endswith(".py")
        else [sys.executable, "-m", *command]
    )
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
