"""Read a synthesized cloud assembly (``cdk.out``) the way ``sam local`` reads a template.

Finds each scavenger function (its handler, asset directory, environment,
timeout), the event source mapping that feeds it, and the DynamoDB tables the
stack defines, so what runs locally is exactly what would be deployed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.scavenger.config import HANDLER as SCAVENGER_HANDLER


class AssemblyError(ValueError):
    """The cloud assembly does not hold what the local runner needs."""


@dataclass(frozen=True)
class TableDef:
    """A DynamoDB table resource of the template."""

    logical_id: str
    properties: dict[str, Any]

    @property
    def stream_view_type(self) -> str | None:
        """The stream view type the template declares, if any."""
        spec = self.properties.get("StreamSpecification") or {}
        view = spec.get("StreamViewType")
        return view if isinstance(view, str) else None


@dataclass(frozen=True)
class MappingDef:
    """An event source mapping: its properties and the table whose stream it reads."""

    logical_id: str
    properties: dict[str, Any]
    source_table: str | None
    #: The path of the construct holding the mapping (the scavenger), from the assembly's
    #: metadata; None when the assembly has none for it.
    construct_path: str | None = None

    @property
    def enabled(self) -> bool:
        """False only for a literal ``Enabled: false`` (or ``"false"``): deployed, Lambda
        reads nothing. A token (a parameter, a condition) counts as enabled, CloudFormation's
        default: it cannot be resolved here, and the construct only ever writes ``false``."""
        value = self.properties.get("Enabled")
        return not (value is False or (isinstance(value, str) and value.lower() == "false"))


@dataclass(frozen=True)
class FunctionDef:
    """A scavenger function as deployed: code, handler, environment and mapping."""

    logical_id: str
    handler: str
    asset_dir: Path
    environment: dict[str, Any]
    timeout_s: int
    mapping: MappingDef | None
    memory_size: int = 128
    #: ``LoggingConfig.LogFormat`` (``JSON`` or ``Text``) and ``ApplicationLogLevel``.
    log_format: str | None = None
    log_level: str | None = None

    def resolved_environment(self, table_names: dict[str, str]) -> dict[str, str]:
        """The environment with ``Ref``s to tables replaced by their (local) names."""
        return {k: _resolve(v, table_names, k) for k, v in self.environment.items()}

    def runtime_environment(self) -> dict[str, str]:
        """What Lambda itself sets from the configuration: the memory size and, with the
        JSON log format, ``AWS_LAMBDA_LOG_FORMAT`` and ``AWS_LAMBDA_LOG_LEVEL`` (INFO when
        unset), which the runtime client applies to the root logger."""
        env = {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_size)}
        if (self.log_format or "").upper() == "JSON":
            env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
            env["AWS_LAMBDA_LOG_LEVEL"] = (self.log_level or "INFO").upper()
        return env


@dataclass
class StackDef:
    """One stack of the assembly: its tables and scavenger functions."""

    name: str
    tables: dict[str, TableDef] = field(default_factory=dict)
    functions: list[FunctionDef] = field(default_factory=list)


def load_assembly(cdk_out: Path | str) -> list[StackDef]:
    """Every stack of the assembly that holds a scavenger function."""
    root = Path(cdk_out)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except FileNotFoundError:
        raise AssemblyError(f"{root} is not a cloud assembly (no manifest.json)") from None
    assets = _asset_dirs(root, manifest)
    stacks = []
    for name, artifact in manifest.get("artifacts", {}).items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        template = json.loads((root / artifact["properties"]["templateFile"]).read_text())
        paths = _construct_paths(root, artifact)
        stack = _read_stack(artifact.get("displayName", name), template, assets, paths)
        if stack.functions:
            stacks.append(stack)
    return stacks


def _asset_dirs(root: Path, manifest: dict[str, Any]) -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for artifact in manifest.get("artifacts", {}).values():
        if artifact.get("type") != "cdk:asset-manifest":
            continue
        files = json.loads((root / artifact["properties"]["file"]).read_text()).get("files", {})
        for asset_hash, asset in files.items():
            source = asset.get("source", {})
            if source.get("packaging") == "zip" and source.get("path"):
                dirs[asset_hash] = root / source["path"]
    return dirs


def _construct_paths(root: Path, artifact: dict[str, Any]) -> dict[str, str]:
    """Logical ID -> construct path, from the stack's metadata: in the manifest, or in the
    file its ``additionalMetadataFile`` names (where aws-cdk-lib 2.257 writes it)."""
    metadata = artifact.get("metadata") or {}
    extra = artifact.get("additionalMetadataFile")
    if extra and (root / extra).is_file():
        metadata = {**metadata, **json.loads((root / extra).read_text())}
    return {
        entry["data"]: path.strip("/")
        for path, entries in metadata.items()
        for entry in entries
        if entry.get("type") == "aws:cdk:logicalId" and isinstance(entry.get("data"), str)
    }


def _holder(path: str | None) -> str | None:
    """The construct holding a resource (``S/Scavenger/EventSourceMapping/Resource`` ->
    ``S/Scavenger``)."""
    if path is None:
        return None
    parts = path.split("/")
    if parts[-1] == "Resource":
        parts.pop()
    return "/".join(parts[:-1]) or None


def _read_stack(
    name: str, template: dict[str, Any], assets: dict[str, Path], paths: dict[str, str]
) -> StackDef:
    resources = template.get("Resources", {})
    stack = StackDef(name)
    mappings: dict[str, MappingDef] = {}
    for logical_id, resource in resources.items():
        kind, props = resource.get("Type"), resource.get("Properties", {})
        if kind in ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
            stack.tables[logical_id] = TableDef(logical_id, props)
        elif kind == "AWS::Lambda::EventSourceMapping":
            function = props.get("FunctionName", {})
            arn = props.get("EventSourceArn")
            source = arn["Fn::GetAtt"][0] if isinstance(arn, dict) and "Fn::GetAtt" in arn else None
            if isinstance(function, dict) and "Ref" in function:
                holder = _holder(paths.get(logical_id))
                mappings[function["Ref"]] = MappingDef(logical_id, props, source, holder)
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        if props.get("Handler") != SCAVENGER_HANDLER:
            continue
        key = str(props.get("Code", {}).get("S3Key", "")).removesuffix(".zip")
        if key not in assets:
            raise AssemblyError(f"{name}/{logical_id}: asset {key!r} is not in the assembly")
        logging_config = props.get("LoggingConfig") or {}
        stack.functions.append(
            FunctionDef(
                logical_id=logical_id,
                handler=props["Handler"],
                asset_dir=assets[key],
                environment=props.get("Environment", {}).get("Variables", {}),
                timeout_s=int(props.get("Timeout", 3)),
                mapping=mappings.get(logical_id),
                memory_size=_plain_int(props.get("MemorySize"), 128),
                log_format=_plain_str(logging_config.get("LogFormat")),
                log_level=_plain_str(logging_config.get("ApplicationLogLevel")),
            )
        )
    return stack


def _resolve(value: Any, table_names: dict[str, str], where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in table_names:
        return table_names[value["Ref"]]
    raise AssemblyError(f"environment variable {where}: cannot resolve {value!r} locally")


def _plain_int(value: Any, default: int) -> int:
    """A template number, or ``default`` for a token (a parameter) or nothing."""
    return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else default


def _plain_str(value: Any) -> str | None:
    """A template string, or None for a token (a parameter) or nothing."""
    return value if isinstance(value, str) else None
