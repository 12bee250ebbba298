"""Cold import: the handler module against ``import boto3`` alone, in fresh processes.

Each sample is a new interpreter that times one import statement with ``perf_counter``
(interpreter start-up is not counted). Variants run interleaved, in a shuffled order, round
after round, and the median of the rounds is reported.

The handler is imported from a copy of the synthesized asset. Lambda unpacks the asset into
a read-only ``/var/task`` and the asset ships no ``__pycache__``, so every cold start
compiles the handler's modules: the ``no .pyc`` variant reproduces that (``-B`` and a copy
without ``__pycache__``); the ``.pyc`` variant shows the same import with bytecode cached.
boto3 is imported from the virtual environment, whose bytecode is cached, as the Lambda
runtime's is.
"""

from __future__ import annotations

import compileall
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_TIMER = (
    "import sys, time\n"
    "sys.path[0:0] = {paths!r}\n"
    "t = time.perf_counter()\n"
    "{statement}\n"
    "print(time.perf_counter() - t)\n"
)
#: Paired: ``import boto3``, then the handler, in one process; prints both elapsed times.
#: The handler imports boto3 itself, so the second time is its whole cold import, and the
#: ratio of the two is not disturbed by how busy the machine was in that moment.
PAIRED = "library, paired: import boto3, then scavenger.handler (no .pyc), one process"
_PAIRED_STATEMENT = "import boto3\nprint(time.perf_counter() - t)\nimport scavenger.handler"


@dataclass(frozen=True)
class Variant:
    name: str
    statement: str
    paths: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def variants(asset_dir: Path, function_env: dict[str, str], work: Path) -> list[Variant]:
    """What is imported, each in its own fresh process."""
    plain = work / "asset-no-pyc"
    cached = work / "asset-pyc"
    for target in (plain, cached):
        shutil.copytree(asset_dir, target, ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(cached, quiet=1)
    fenv = tuple(function_env.items())
    in_lambda = (("AWS_LAMBDA_FUNCTION_NAME", "benchmark"),)
    alt = (("TARGET_TABLE", "bench"),)
    return [
        Variant("import boto3", "import boto3"),
        Variant(PAIRED, _PAIRED_STATEMENT, (str(plain),), fenv),
        Variant(
            "library: import scavenger.handler (no .pyc, as in Lambda)",
            "import scavenger.handler",
            (str(plain),),
            fenv,
        ),
        Variant(
            "library: import scavenger.handler (.pyc cached)",
            "import scavenger.handler",
            (str(cached),),
            fenv,
        ),
        Variant(
            "import boto3 + boto3.client('dynamodb')", "import boto3; boto3.client('dynamodb')"
        ),
        Variant(
            "library: Lambda init (import + client, no .pyc)",
            "import scavenger.handler",
            (str(plain),),
            fenv + in_lambda,
        ),
        Variant(
            "per-record (Powertools): module init (import + resource)",
            "import benchmarks.alternatives.per_record",
            (str(ROOT),),
            alt,
        ),
        Variant(
            "article: module init (import + client)",
            "import benchmarks.alternatives.article",
            (str(ROOT),),
            alt,
        ),
    ]


def _sample(variant: Variant, base_env: dict[str, str]) -> list[float]:
    env = {**base_env, **dict(variant.env)}
    code = _TIMER.format(paths=list(variant.paths), statement=variant.statement)
    done = subprocess.run(
        [sys.executable, "-B", "-c", code],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [float(line) for line in done.stdout.split()]


def measure(
    asset_dir: Path,
    function_env: dict[str, str],
    base_env: dict[str, str],
    rounds: int = 9,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, dict[str, Any]]:
    """Median seconds per variant over ``rounds`` rounds (after one discarded), each round
    running every variant once, in a shuffled order."""
    order = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        chosen = variants(asset_dir, function_env, Path(tmp))
        samples: dict[str, list[float]] = {v.name: [] for v in chosen}
        boto3_part: list[float] = []
        for round_no in range(rounds + 1):
            for variant in order.sample(chosen, len(chosen)):
                *first, seconds = _sample(variant, base_env)
                if round_no:  # the first round warms the file cache and is not counted
                    samples[variant.name].append(seconds)
                    boto3_part.extend(first)
            progress(f"cold import round {round_no}/{rounds}")
    out: dict[str, dict[str, Any]] = {
        name: {
            "median_s": statistics.median(values),
            "quartiles_s": _quartiles(values),
            "samples_s": values,
        }
        for name, values in samples.items()
    }
    ratios = [total / part for total, part in zip(samples[PAIRED], boto3_part, strict=True)]
    out[PAIRED].update(
        {
            "boto3_part_median_s": statistics.median(boto3_part),
            "ratio_median": statistics.median(ratios),
            "ratio_quartiles": _quartiles(ratios),
            "ratios": ratios,
        }
    )
    return out


def _quartiles(values: list[float]) -> list[float]:
    return statistics.quantiles(values, n=4) if len(values) > 1 else values * 3


def sample_env(extra: dict[str, str]) -> dict[str, str]:
    """An environment for the sample processes: no AWS configuration from this machine."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
    return {**keep, **extra}
