"""An Airflow 3 TaskFlow DAG: summarise a few texts through the gateway, then total the tokens.

Each text is summarised by its own mapped task instance (``summarise.expand``), so the
summaries run in parallel on a real deployment and are retried one by one; ``aggregate`` then
adds up what they cost. The workers need ``gatewayclient`` installed and PLATFORM_API_URL and
AUTH_TOKEN in their environment (or adapt ``gateway()`` to read an Airflow Connection).

Try it locally, against a fake gateway, with ``bash examples/airflow_dag/run_dag_test.sh``.
"""

from datetime import datetime, timezone

from airflow.sdk import dag, task

from gatewayclient import SyncGatewayClient

MODEL = "openai/gpt-4o-mini"
TEXTS = [
    "The Rhine rises in the Swiss Alps and flows north to the North Sea through six countries.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "The first public railway to use steam locomotives opened in 1825 in England.",
]
SYSTEM_PROMPT = {"role": "system", "content": "Summarise the user's text in one short sentence."}


def gateway():
    # A client per task run, not at module level: Airflow imports this file on every DAG parse,
    # and each task runs in a process of its own. The client retries 429s and 5xx by itself.
    return SyncGatewayClient(timeout=60, max_retries=3)


@dag(
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["gatewayclient", "example"],
)
def gateway_summaries():
    @task
    def load_texts():
        return TEXTS

    @task
    def summarise(text):
        messages = [SYSTEM_PROMPT, {"role": "user", "content": text}]
        with gateway() as client:
            completion = client.chat_completion(MODEL, messages, max_tokens=60)
        # What a task returns goes to XCom, which wants plain JSON: no response objects.
        return {
            "summary": completion.choices[0].message.content,
            "usage": completion.usage.to_dict(),
        }

    @task
    def aggregate(results):
        totals = {"summaries": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for result in results:
            print(f"- {result['summary']}")
            totals["summaries"] += 1
            for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                totals[key] += result["usage"][key]
        print(f"{totals['summaries']} summaries cost {totals['total_tokens']} tokens")
        return totals

    aggregate(summarise.expand(text=load_texts()))


gateway_summaries_dag = gateway_summaries()
