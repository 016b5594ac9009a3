"""The Airflow tests' setting: Airflow 3 in a virtual environment of its own (run_dag_test.sh
makes it), a metadata DB on SQLite in a temporary AIRFLOW_HOME, the example DAG deployed in its
DAGs folder, and the project's real redis-server fixtures (tests/redis_server.py).

Run them with ``bash examples/airflow_dag/run_dag_test.sh``, or, once that has made
``.venv-airflow``, with ``.venv-airflow/bin/python -m pytest -c examples/airflow_dag/pytest.ini
examples/airflow_dag/tests``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent
REPO = EXAMPLE.parent.parent
DAG_FILE = EXAMPLE / "gateway_batch_dag.py"
AIRFLOW = Path(sys.executable).with_name("airflow")
COMMAND_TIMEOUT = 120  # seconds, for each airflow command

sys.path.insert(0, str(REPO / "tests"))  # redis_server: one way to start and stop Redis
from redis_server import own_redis, redis_server, redis_session  # noqa: E402, F401  (fixtures)

# Airflow reads its configuration when first imported: the home is set before any test imports it.
_OWN_HOME = not os.environ.get("AIRFLOW_HOME")
if _OWN_HOME:
    _home = tempfile.mkdtemp(prefix="gatewayclient-airflow-")
    os.environ.update(
        AIRFLOW_HOME=_home,
        AIRFLOW__CORE__DAGS_FOLDER=os.path.join(_home, "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///" + os.path.join(_home, "airflow.db"),
    )
HOME = Path(os.environ["AIRFLOW_HOME"])
DAGS = Path(os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", HOME / "dags"))


def run_airflow(*args: str, env: Dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run an ``airflow`` command to its end, its output captured."""
    command = [str(AIRFLOW), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


def airflow(*args: str, env: Dict[str, str]) -> str:
    """Run an ``airflow`` command to its end; its output, or a failure showing it."""
    result = run_airflow(*args, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"airflow {' '.join(args)} failed:\n{output[-4000:]}"
    return output


def pytest_configure(config: pytest.Config) -> None:
    """Deploy the DAG (Airflow runs only DAGs that a DAG bundle holds) and migrate the DB."""
    DAGS.mkdir(parents=True, exist_ok=True)
    shutil.copy(DAG_FILE, DAGS / DAG_FILE.name)
    if not (HOME / "airflow.db").exists():
        airflow("db", "migrate", env=dict(os.environ))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWN_HOME:  # run_dag_test.sh removes its own
        shutil.rmtree(HOME, ignore_errors=True)


@pytest.fixture
def processes() -> Iterator[List[subprocess.Popen[bytes]]]:
    """Processes a test starts, each in a session of its own: any still running at the end is
    killed by its process group's id (its PID) and reaped."""
    started: List[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
