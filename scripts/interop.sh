#!/usr/bin/env bash
# Interop: both clients against a real LiteLLM proxy on 127.0.0.1 (tests/interop).
#
#   bash scripts/interop.sh [pytest args...]
#
# 1. Makes (or reuses) a virtual environment, .venv-interop at the repo root (INTEROP_VENV to
#    change it), with the pinned litellm[proxy] and prisma (LiteLLM's auth error handler imports
#    it; without it a request with no key is a 500), pytest, and this repo (editable).
#    It is reused as long as the pins and the package metadata are unchanged.
# 2. Runs `pytest -m interop tests/interop`. The suite's conftest starts the proxies (fully
#    offline: local cost map, telemetry off; 127.0.0.1 only) and stops them by PID at the end.
#    They write their PIDs to a file, and this script's trap stops any still running however
#    pytest ended (a crash, a timeout, Ctrl-C).
# A proxy that cannot start fails the run; nothing here is ever skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

LITELLM_VERSION=1.108.7
PRISMA_VERSION=0.15.0
VENV=${INTEROP_VENV:-.venv-interop}
PYTEST_TIMEOUT=${INTEROP_TIMEOUT:-600} # the whole pytest run, in seconds

export PIP_DISABLE_PIP_VERSION_CHECK=1
export GATEWAYCLIENT_INTEROP_STRICT=1
GATEWAYCLIENT_INTEROP_PIDFILE=$(mktemp "${TMPDIR:-/tmp}/gatewayclient-interop-pids.XXXXXX")
export GATEWAYCLIENT_INTEROP_PIDFILE

is_proxy() { # a PID that is still one of our litellm processes (not a reused PID)
    [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q litellm
}

stop_proxies() {
    local pid pids=() i
    [[ -s $GATEWAYCLIENT_INTEROP_PIDFILE ]] && mapfile -t pids <"$GATEWAYCLIENT_INTEROP_PIDFILE"
    for pid in "${pids[@]}"; do
        if is_proxy "$pid"; then
            echo "interop: stopping leftover proxy, pid $pid"
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for i in $(seq 1 30); do
        local alive=0
        for pid in "${pids[@]}"; do is_proxy "$pid" && alive=1; done
        ((alive)) || break
        sleep 0.5
    done
    for pid in "${pids[@]}"; do
        if is_proxy "$pid"; then
            echo "interop: proxy pid $pid ignored SIGTERM; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -f "$GATEWAYCLIENT_INTEROP_PIDFILE"
}
trap stop_proxies EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$(date +%s)
stamp="litellm[proxy]==$LITELLM_VERSION prisma==$PRISMA_VERSION $(cat setup.cfg setup.py pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)"
if [[ -x $VENV/bin/python && -f $VENV/.interop-stamp && $(cat "$VENV/.interop-stamp") == "$stamp" ]]; then
    echo "interop: reusing $VENV ($stamp)"
else
    echo "interop: installing into $VENV: litellm[proxy]==$LITELLM_VERSION prisma==$PRISMA_VERSION"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q \
        "litellm[proxy]==$LITELLM_VERSION" "prisma==$PRISMA_VERSION" \
        "pytest>=7.4" "pytest-timeout>=2.2" -e .
    echo "$stamp" >"$VENV/.interop-stamp"
fi
installed=$(date +%s)
echo "interop: environment ready in $((installed - started)) s"

status=0
timeout --foreground --signal=TERM --kill-after=20 "$PYTEST_TIMEOUT" \
    "$VENV/bin/python" -m pytest -p no:cacheprovider -m interop -rfEs tests/interop "$@" || status=$?
echo "interop: tests took $(($(date +%s) - installed)) s; install + tests $(($(date +%s) - started)) s"
if ((status == 5)); then
    echo "interop: pytest ran no test" >&2
fi
exit "$status"
