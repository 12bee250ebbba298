#!/usr/bin/env bash
# All set-up on a fresh machine (Python 3.11+, Node.js with npm; Java 17 for DynamoDB Local),
# then one job:
#   ./run.sh demo        stream-scavenger demo: the example app end to end on DynamoDB Local
#   ./run.sh test        the whole test suite, every tier (extra arguments go to pytest)
#   ./run.sh test-fast   the fast tier, for day-to-day work: construct and runtime tests,
#                        no Java, no DynamoDB Local, under a minute (extra arguments go to pytest)
# and, for maintainers:
#   ./run.sh lint                    ruff check, ruff format --check, mypy, API.md up to date
#   ./run.sh snapshots               re-synthesize integ/ and rewrite all its snapshots (no deploy)
#   ./run.sh integ-deploy PROFILE    deploy integ/ to a sandbox account and run its assertions
#   ./run.sh bench [options]         benchmarks (python -m benchmarks): table, docs/benchmarks.*
#
# Test tiers (pytest markers, one per test, assigned in tests/conftest.py):
#   fast  construct tests (jsii, so Node) and runtime tests without DynamoDB Local
#   ddb   DynamoDB Local (Java) and the end-to-end tests beside it
#   slow  integ-runner snapshots, the wheel, cfn-lint, the benchmark subset, the demo command
# e.g. ./run.sh test -m ddb, ./run.sh test -m "not slow"; the long property run (500 examples
# per Hypothesis test instead of 30) is ./run.sh test -m property --slow.
# CI (.ci/run) runs ./run.sh lint, then ./run.sh test.
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "run.sh: $*" >&2; exit 1; }

LINT_PATHS=(src tests testkit examples integ scripts benchmarks)

check_tools() {
  command -v python3 >/dev/null || die "python3 not found: install Python 3.11 or newer"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is needed, found $(python3 --version 2>&1)"
  command -v npm >/dev/null || die "npm not found: install Node.js (18 or newer) with npm"
}

check_java() {
  command -v java >/dev/null \
    || die "java not found: DynamoDB Local needs a Java 17 runtime (e.g. apt-get install openjdk-17-jre-headless)"
  local major
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [ "${major:-0}" -ge 17 ] || die "Java 17 or newer is needed for DynamoDB Local, found: $(java -version 2>&1 | head -1)"
}

# .venv from pyproject.toml, node_modules from package-lock.json; each redone only when its
# files changed (a stamp holds their hash), so a pytest setting does not reinstall npm's tree.
setup() {
  check_tools
  local want_py want_node py_stamp=.venv/.setup-stamp node_stamp=node_modules/.setup-stamp
  want_py=$(sha256sum pyproject.toml | cut -d' ' -f1)
  want_node=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
  if ! { [ -f "$py_stamp" ] && [ "$(cat "$py_stamp")" = "$want_py" ]; }; then
    echo "run.sh: setting up .venv (the first run takes a few minutes)" >&2
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[dev]"
    echo "$want_py" > "$py_stamp"
  fi
  if ! { [ -f "$node_stamp" ] && [ "$(cat "$node_stamp")" = "$want_node" ]; }; then
    echo "run.sh: setting up node_modules (DynamoDB Local, integ-runner)" >&2
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want_node" > "$node_stamp"
  fi
}

lint() {
  local failed=()
  step() {
    local name=$1
    shift
    echo "run.sh lint: $name" >&2
    "$@" || failed+=("$name")
  }
  step "ruff check" .venv/bin/python -m ruff check "${LINT_PATHS[@]}"
  step "ruff format --check" .venv/bin/python -m ruff format --check "${LINT_PATHS[@]}"
  step "mypy (strict)" .venv/bin/python -m mypy
  step "API.md up to date" .venv/bin/python scripts/gen_api.py --check
  [ ${#failed[@]} -eq 0 ] || die "lint failed: ${failed[*]}"
}

case "${1:-}" in
  demo)
    shift
    setup
    check_java
    .venv/bin/stream-scavenger demo "$@"
    ;;
  test)
    shift
    setup
    check_java
    .venv/bin/python -m pytest "$@"
    ;;
  test-fast)
    shift
    setup
    .venv/bin/python -m pytest -m fast "$@"
    ;;
  lint)
    setup
    lint
    ;;
  bench)
    shift
    setup
    check_java
    .venv/bin/python -m benchmarks "$@"
    ;;
  snapshots)
    setup
    # From scratch: integ-runner ignores asset hashes when comparing, so an update would
    # keep a stale copy of the function's code in the snapshot.
    rm -rf integ/*.snapshot
    node_modules/.bin/integ-runner --directory integ --language python \
      --app "$PWD/.venv/bin/python {filePath}" --test-regex '^integ_.*\.py$' --update-on-failed --dry-run
    .venv/bin/python scripts/gen_api.py
    ;;
  integ-deploy)
    [ -n "${2:-}" ] || die "usage: ./run.sh integ-deploy AWS_PROFILE"
    setup
    node_modules/.bin/integ-runner --directory integ --language python \
      --app "$PWD/.venv/bin/python {filePath}" --test-regex '^integ_.*\.py$' \
      --update-on-failed --force --profiles "$2" --parallel-regions "${AWS_REGION:-us-east-1}"
    ;;
  *)
    die "usage: ./run.sh demo | test [pytest arguments] | test-fast [pytest arguments] | lint | snapshots | integ-deploy PROFILE | bench [options]"
    ;;
esac
