"""Generate API.md from the public API's signatures and docstrings.

    python scripts/gen_api.py          # rewrite API.md
    python scripts/gen_api.py --check  # exit 1 if API.md is out of date

Reads the source with ``ast`` (no import of aws-cdk-lib, no object reprs), so the
output depends on the code alone. The CLI section is argparse's own help text.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "src" / "stream_scavenger"
sys.path.insert(0, str(ROOT / "src"))


def parse(relative: str) -> ast.Module:
    return ast.parse((PKG / relative).read_text())


def constants(module: ast.Module) -> dict[str, str]:
    """Module-level NAME = expr, as source text, to show defaults by value."""
    found = {}
    for node in module.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            found[node.targets[0].id] = ast.unparse(node.value)
    return found


def find_class(module: ast.Module, name: str) -> ast.ClassDef:
    return next(n for n in module.body if isinstance(n, ast.ClassDef) and n.name == name)


def doc(node: ast.AST) -> str:
    return inspect.cleandoc(ast.get_docstring(node) or "")  # type: ignore[arg-type]


def first_paragraph(text: str) -> str:
    return " ".join(text.split("\n\n")[0].split())


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def param_docs(docstring: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for match in re.finditer(r":param (\w+):(.*?)(?=\n\s*:param |\Z)", docstring, re.S):
        params[match.group(1)] = " ".join(match.group(2).split())
    return params


def signature_table(func: ast.FunctionDef, consts: dict[str, str]) -> list[str]:
    params = param_docs(doc(func))
    args = func.args.kwonlyargs
    defaults = func.args.kw_defaults
    rows = ["| parameter | type | default | meaning |", "| --- | --- | --- | --- |"]
    for arg, default in zip(args, defaults, strict=True):
        shown = "required" if default is None else ast.unparse(default)
        shown = consts.get(shown, shown)
        rows.append(
            f"| `{arg.arg}` | `{cell(ast.unparse(arg.annotation))}` | `{cell(shown)}` "
            f"| {cell(params.get(arg.arg, ''))} |"
            if arg.annotation
            else f"| `{arg.arg}` | | `{shown}` | {cell(params.get(arg.arg, ''))} |"
        )
    return rows


def commented_attributes(cls: ast.ClassDef, source: str) -> list[tuple[str, str, str]]:
    """Class-level ``name: type`` annotations with the ``#:`` comment lines above them."""
    lines = source.splitlines()
    found = []
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            comments: list[str] = []
            index = node.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#:"):
                comments.insert(0, lines[index].strip()[2:].strip())
                index -= 1
            found.append((node.target.id, ast.unparse(node.annotation), " ".join(comments)))
    return found


def field_docs(cls: ast.ClassDef) -> list[tuple[str, str, str, str]]:
    """Dataclass fields: name, type, default, and the docstring after the field."""
    fields = []
    body = cls.body
    for index, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            after = body[index + 1] if index + 1 < len(body) else None
            text = (
                after.value.value
                if isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
                else ""
            )
            default = ast.unparse(node.value) if node.value else "required"
            fields.append(
                (node.target.id, ast.unparse(node.annotation), default, " ".join(text.split()))
            )
    return fields


def methods(cls: ast.ClassDef) -> list[tuple[str, str]]:
    rows = []
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
            if any(ast.unparse(d) == "property" for d in node.decorator_list):
                rows.append((f"{node.name} (property){returns}", first_paragraph(doc(node))))
                continue
            args = ast.unparse(node.args)
            args = re.sub(r"^(self|cls)(, )?", "", args)
            rows.append((f"{node.name}({args}){returns}", first_paragraph(doc(node))))
    return rows


def construct_section() -> list[str]:
    module = parse("construct.py")
    source = (PKG / "construct.py").read_text()
    consts = constants(module)
    cls = find_class(module, "StreamScavenger")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    out = [
        "## `stream_scavenger.StreamScavenger`",
        "",
        doc(cls),
        "",
        "```python",
        "StreamScavenger(scope: Construct, id: str, *, source_table, target_table, **options)",
        "StreamScavenger(scope: Construct, id: str, *, source_table, "
        "targets=[ScavengerTarget(...), ...], **options)",
        "```",
        "",
    ]
    out += signature_table(init, consts) + [""]
    out += [
        "Raises `ScavengerConfigError` (naming the option and its allowed range) for any invalid "
        "option;",
        "unresolved tokens pass validation.",
        "",
    ]
    out += ["### Attributes", "", "| attribute | type | meaning |", "| --- | --- | --- |"]
    out += [f"| `{n}` | `{cell(t)}` | {cell(c)} |" for n, t, c in commented_attributes(cls, source)]
    out += [
        "",
        "### Methods",
        "",
        "Metric methods take any `aws_cloudwatch.Metric` keyword "
        "(`period`, `statistic`, `label`, ...).",
        "",
        "| method | meaning |",
        "| --- | --- |",
    ]
    out += [f"| `{cell(sig)}` | {cell(text)} |" for sig, text in methods(cls)]
    return out + [""]


def target_section() -> list[str]:
    module = parse("targets.py")
    cls = find_class(module, "ScavengerTarget")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    out = [
        "## `stream_scavenger.ScavengerTarget`",
        "",
        doc(cls),
        "",
        "```python",
        "ScavengerTarget(table: ITable, *, key_mapping=None, event_names=None)",
        "```",
        "",
    ]
    out += signature_table(init, constants(module)) + [""]
    out += [
        "The construct's `targets` attribute holds each target resolved: `table`, the complete "
        "`key_mapping`, `event_names` and the table's key `schema` (None when imported).",
        "",
    ]
    return out


def thresholds_section() -> list[str]:
    module = parse("monitoring.py")
    cls = find_class(module, "AlarmThresholds")
    sustained = ast.literal_eval(constants(module)["_SUSTAINED"])
    out = [
        "## `stream_scavenger.AlarmThresholds`",
        "",
        doc(cls),
        "",
        "| field | type | default | consecutive 5-minute periods | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    out += [
        f"| `{n}` | `{cell(t)}` | `{d}` | {sustained.get(n, 1)} | {cell(text)} |"
        for n, t, d, text in field_docs(cls)
    ]
    out += ["", "| method | meaning |", "| --- | --- |"]
    out += [f"| `{cell(sig)}` | {cell(text)} |" for sig, text in methods(cls)]
    return out + [""]


def backfill_options_section() -> list[str]:
    module = parse("backfill_machine.py")
    cls = find_class(module, "BackfillOptions")
    out = [
        "## `stream_scavenger.BackfillOptions`",
        "",
        doc(cls),
        "",
        first_paragraph(doc(module)),
        "",
        "| field | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    out += [f"| `{n}` | `{cell(t)}` | `{d}` | {cell(text)} |" for n, t, d, text in field_docs(cls)]
    return out + [""]


def event_name_section() -> list[str]:
    cls = find_class(parse("events.py"), "EventName")
    out = [
        "## `stream_scavenger.EventName`",
        "",
        doc(cls),
        "",
        "| member | meaning |",
        "| --- | --- |",
    ]
    out += [f"| `{n}` | {cell(text)} |" for n, _, _, text in _enum_members(cls)]
    out += ["", "| property / method | meaning |", "| --- | --- |"]
    out += [f"| `{cell(sig)}` | {cell(text)} |" for sig, text in methods(cls)]
    return out + [""]


def _enum_members(cls: ast.ClassDef) -> list[tuple[str, str, str, str]]:
    members = []
    for index, node in enumerate(cls.body):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            after = cls.body[index + 1]
            text = (
                after.value.value
                if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                else ""
            )
            members.append((node.targets[0].id, "", "", str(text)))
    return members


def error_section() -> list[str]:
    cls = find_class(parse("validation.py"), "ScavengerConfigError")
    return ["## `stream_scavenger.ScavengerConfigError`", "", f"`ValueError`. {doc(cls)}", ""]


def contract_section() -> list[str]:
    module = parse("runtime/scavenger/config.py")
    consts = constants(module)
    metrics = ast.literal_eval(consts["METRICS"])
    cls = find_class(module, "ScavengerConfig")
    out = [
        "## The function's configuration contract",
        "",
        "`stream_scavenger/runtime/scavenger/config.py`, shipped inside the function's asset; "
        "the one module",
        "the construct side imports from the runtime.",
        "",
        doc(module),
        "",
        "### `ScavengerConfig`",
        "",
        doc(cls),
        "",
        "| field | type | default |",
        "| --- | --- | --- |",
    ]
    out += [
        f"| `{n}` | `{cell(t)}` | `{cell(consts.get(d, d))}` |" for n, t, d, _ in field_docs(cls)
    ]
    out += ["", "| method | meaning |", "| --- | --- |"]
    out += [f"| `{cell(sig)}` | {cell(text)} |" for sig, text in methods(cls)]
    target = find_class(module, "TargetConfig")
    out += ["", "### `TargetConfig`", "", doc(target), "", "| field | type | default |"]
    out += ["| --- | --- | --- |"]
    out += [
        f"| `{n}` | `{cell(t)}` | `{cell(consts.get(d, d))}` |" for n, t, d, _ in field_docs(target)
    ]
    out += [
        "",
        "### Metrics",
        "",
        f"Namespace `{ast.literal_eval(consts['METRICS_NAMESPACE'])}`, dimension "
        f"`{ast.literal_eval(consts['METRICS_DIMENSION'])}`; "
        "one embedded-metric-format line per invocation.",
        "",
        "| metric | unit |",
        "| --- | --- |",
    ]
    out += [f"| `{name}` | {unit} |" for name, unit in metrics.items()]
    per_target = ast.literal_eval(consts["TARGET_METRICS"])
    out += [
        "",
        "With several targets, one more line per target carries "
        + ", ".join(f"`{m}`" for m in per_target)
        + f" with the dimensions `{ast.literal_eval(consts['METRICS_DIMENSION'])}` and "
        f"`{ast.literal_eval(consts['TARGET_DIMENSION'])}` (the table's name).",
    ]
    handler = parse("runtime/scavenger/handler.py")
    out += [
        "",
        "### Handler",
        "",
        "`scavenger.handler.handler(event, context)`: " + first_paragraph(doc(handler)),
        "",
    ]
    return out


#: The local runner's modules, in reading order (the old names runner, check and redrive
#: are deprecated aliases and not documented).
LOCAL_MODULES = (
    "dynamodb_local",
    "provision",
    "assembly",
    "invoker",
    "runtime_api",
    "event_source_mapping",
    "scenario",
)


def local_section() -> list[str]:
    out = ["## Local running: `stream_scavenger.local` (extra `local`)", ""]
    modules = [f"local/{name}" for name in LOCAL_MODULES] + ["redrive", "backfill"]
    modules += ["backfill_execution"]
    modules += ["runtime/scavenger/backfill", "runtime/scavenger/filtering"]
    for path in modules:
        module = parse(f"{path}.py")
        out += [
            f"### `stream_scavenger.{path.replace('/', '.')}`",
            "",
            first_paragraph(doc(module)),
            "",
            "| name | meaning |",
            "| --- | --- |",
        ]
        for node in module.body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                out.append(f"| class `{node.name}` | {cell(first_paragraph(doc(node)))} |")
                out += [
                    f"| `{node.name}.{cell(sig)}` | {cell(text)} |" for sig, text in methods(node)
                ]
            elif isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                args = ast.unparse(node.args)
                returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
                out.append(
                    f"| `{cell(node.name + '(' + args + ')' + returns)}` "
                    f"| {cell(first_paragraph(doc(node)))} |"
                )
        out.append("")
    return out


#: The width argparse wraps at in API.md: its own default on an 80-column terminal, fixed so
#: that neither $COLUMNS nor the terminal changes the file.
HELP_WIDTH = 78
#: A usage part: a whole (...) or [...] group, or one word (argparse 3.11's own split).
_USAGE_PART = re.compile(r"\(.*?\)+(?=\s|$)|\[.*?\]+(?=\s|$)|\S+")


def stable_formatter(base: type[argparse.HelpFormatter]) -> type[argparse.HelpFormatter]:
    """``base`` at :data:`HELP_WIDTH`, wrapping usage the same way on Python 3.11 to 3.14.

    Python 3.13 rewrote usage wrapping (it breaks inside ``[a | b]`` groups) and prints
    ``-o, --opt X`` where 3.11 prints ``-o X, --opt X``; API.md is checked on every
    version CI runs, so both are done here one way: 3.11's.
    """

    class Stable(base):  # type: ignore[valid-type,misc]
        def __init__(self, prog: str, **kwargs: Any) -> None:
            kwargs["width"] = HELP_WIDTH
            super().__init__(prog, **kwargs)

        def _format_action_invocation(self, action: argparse.Action) -> str:
            if not action.option_strings or action.nargs == 0:
                return str(super()._format_action_invocation(action))
            args = self._format_args(action, self._get_default_metavar_for_optional(action))
            return ", ".join(f"{option} {args}" for option in action.option_strings)

        def _format_usage(self, usage: Any, actions: Any, groups: Any, prefix: Any) -> str:
            if usage is not None or not actions:
                return str(super()._format_usage(usage, actions, groups, prefix))
            prefix = "usage: " if prefix is None else prefix
            prog = self._prog
            optionals = [a for a in actions if a.option_strings]
            positionals = [a for a in actions if not a.option_strings]
            opt_parts = _USAGE_PART.findall(self._actions_usage(optionals, groups))
            pos_parts = _USAGE_PART.findall(self._actions_usage(positionals, groups))
            text_width = self._width - self._current_indent
            one_line = " ".join([prog, *opt_parts, *pos_parts])
            if len(prefix) + len(one_line) <= text_width:
                return f"{prefix}{one_line}\n\n"
            if len(prefix) + len(prog) <= 0.75 * text_width:
                indent = " " * (len(prefix) + len(prog) + 1)
                lines = _wrap([prog, *opt_parts], indent, text_width, len(prefix))
                if opt_parts:
                    lines += _wrap(pos_parts, indent, text_width)
                else:
                    lines = _wrap([prog, *pos_parts], indent, text_width, len(prefix))
            else:
                indent = " " * len(prefix)
                lines = [prog, *_wrap(opt_parts, indent, text_width)]
                lines += _wrap(pos_parts, indent, text_width)
            return str(prefix) + "\n".join(lines) + "\n\n"

        def _actions_usage(self, actions: Any, groups: Any) -> str:
            if hasattr(self, "_get_actions_usage_parts"):  # 3.13+
                return " ".join(self._get_actions_usage_parts(actions, groups))
            return str(self._format_actions_usage(actions, groups))

    return Stable


def _wrap(parts: list[str], indent: str, width: int, first: int | None = None) -> list[str]:
    """Greedy wrap of usage parts; the first line starts at column ``first`` when given."""
    lines: list[str] = []
    line: list[str] = []
    length = (len(indent) if first is None else first) - 1
    for part in parts:
        if line and length + 1 + len(part) > width:
            lines.append(indent + " ".join(line))
            line, length = [], len(indent) - 1
        line.append(part)
        length += len(part) + 1
    if line:
        lines.append(indent + " ".join(line))
    if first is not None and lines:
        lines[0] = lines[0][len(indent) :]
    return lines


def stable_help(parser: argparse.ArgumentParser) -> str:
    parser.formatter_class = stable_formatter(parser.formatter_class)  # type: ignore[arg-type]
    if hasattr(parser, "color"):  # 3.14: no ANSI colours, whatever the environment says
        parser.color = False
    return parser.format_help().rstrip()


def cli_section() -> list[str]:
    from stream_scavenger.cli import build_parser

    parser = build_parser()
    out = ["## CLI: `stream-scavenger`", "", "```", stable_help(parser), "```", ""]
    for name, sub in parser._subparsers._group_actions[0].choices.items():  # type: ignore[union-attr]
        out += [f"### `stream-scavenger {name}`", "", "```", stable_help(sub), "```", ""]
    return out


def render() -> str:
    lines = [
        "# API reference",
        "",
        "<!-- Generated by scripts/gen_api.py from the code; do not edit by hand. -->",
        "",
    ]
    for section in (
        construct_section,
        target_section,
        thresholds_section,
        backfill_options_section,
        event_name_section,
        error_section,
        contract_section,
        local_section,
        cli_section,
    ):
        lines += section()
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    target = ROOT / "API.md"
    if "--check" in argv:
        if target.read_text() != text:
            print("API.md is out of date: run python scripts/gen_api.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
