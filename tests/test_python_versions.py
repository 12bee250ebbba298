"""What differs between the Python versions CI runs (``./run.sh test-pythons``: 3.11 to 3.14).

Cheap checks that also run on the main venv, so a change that breaks a newer Python is
caught before the per-version step runs.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gen_api  # noqa: E402


def test_api_md_cli_help_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """argparse wraps at $COLUMNS - 2 and 3.13 wraps usage differently: API.md must not."""
    monkeypatch.setenv("COLUMNS", "40")
    narrow = gen_api.cli_section()
    monkeypatch.setenv("COLUMNS", "200")
    wide = gen_api.cli_section()
    assert narrow == wide
    text = "\n".join(wide)
    # Usage breaks between whole groups (3.11's way; 3.13 would split this one after the |).
    assert "[--checkpoint FILE | --no-checkpoint]" in text
    assert all(len(line) <= gen_api.HELP_WIDTH for line in text.splitlines() if "usage:" in line)


def _unencodable_strings(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node.value.encode("utf-8")
            except UnicodeEncodeError:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_string_in_the_code_holds_a_lone_surrogate() -> None:
    """Python 3.13+ cannot compile a docstring holding one (``"\\ud800"`` written unescaped).

    The module then fails to import: the function's runtime is Python 3.14 on Lambda. Write
    the escape as text (``\\\\ud800``) or build the character at run time (``chr(0xD800)``).
    """
    files = sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "testkit").rglob("*.py"))
    assert files
    assert [where for path in files for where in _unencodable_strings(path)] == []
