"""Run the example DAG once with ``dag.test()`` against a FakeGateway; exit 1 unless it all worked.

Run by run_dag_test.sh, inside a virtual environment with Airflow and gatewayclient installed,
AIRFLOW_HOME pointing at a migrated SQLite database and gateway_dag.py in the DAGs folder
(``dag.test()`` runs only DAGs that a DAG bundle holds).
"""

import os
import sys
import time

from gatewayclient.testing import FakeGateway, expected_usage


def report(message):
    print(f"[run_dag_test] {message}", flush=True)


def fail(message):
    report(f"FAILED: {message}")
    sys.exit(1)


def aggregate_result(dag, run):
    """The value the ``aggregate`` task returned, read back from XCom in the metadata DB."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=run.run_id, dag_ids=dag.dag_id, task_ids="aggregate", key="return_value"
        )
        rows = session.scalars(query).all()
        return [XComModel.deserialize_value(row) for row in rows]


def main():
    with FakeGateway() as gw:
        # What a deployment's worker environment would carry.
        os.environ["PLATFORM_API_URL"] = gw.url
        os.environ["AUTH_TOKEN"] = gw.token

        from airflow.configuration import conf

        sys.path.insert(0, conf.get("core", "dags_folder"))
        import gateway_dag

        dag = gateway_dag.gateway_summaries_dag
        started = time.monotonic()
        run = dag.test()
        report(f"dag.test() took {time.monotonic() - started:.1f} s")
        requests = gw.requests

    instances = run.get_task_instances()
    for ti in sorted(instances, key=lambda ti: (ti.task_id, ti.map_index)):
        report(f"{ti.task_id}[{ti.map_index}]: {ti.state}")
    texts = gateway_dag.TEXTS
    if len(instances) != 2 + len(texts):
        fail(f"expected {2 + len(texts)} task instances, got {len(instances)}")
    failed = [
        f"{ti.task_id}[{ti.map_index}]={ti.state}" for ti in instances if ti.state != "success"
    ]
    if failed:
        fail(f"task instances not successful: {', '.join(failed)}")
    if run.state != "success":
        fail(f"the DAG run ended {run.state}")

    asked = sorted(r.json["messages"][-1]["content"] for r in requests)
    if asked != sorted(texts):
        fail(f"the gateway was asked {asked!r}, expected the DAG's texts")

    messages = [[gateway_dag.SYSTEM_PROMPT, {"role": "user", "content": t}] for t in texts]
    used = [expected_usage(gateway_dag.MODEL, m, 60) for m in messages]
    expected = {"summaries": len(texts)}
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        expected[key] = sum(u[key] for u in used)
    results = aggregate_result(dag, run)
    if results != [expected]:
        fail(f"aggregate returned {results!r}, expected {expected!r}")
    report(f"OK: {len(instances)} task instances succeeded; aggregate = {expected}")


if __name__ == "__main__":
    main()
