"""Scenario c of benchmarks/pipeline.py: the naive per-event pipeline, the design rtba's
batches replace. One Faust agent on rtba's own Faust app takes the events one by one; for
each: HGETALL the customer's hash, fold the event into it in Python (recency, frequency,
monetary and click counts), HSET it back, and learn and predict a River KMeans cluster on
the customer's features. No outbox, no de-duplication, no due index: a floor, not a rival.

Run by the harness: python -m benchmarks.naive_agent APP_ID (environment as for rtba)
"""

from __future__ import annotations

import json
import math
import sys

from river import cluster, preprocessing

from streams.processing.app import faust_app
from streams.processing.logs import Worker
from streams.processing.schemas import to_epoch_ms
from streams.settings import Settings
from streams.state.redis_client import connect_async


def fold(state: dict[bytes, bytes], event: dict) -> dict[str, str]:
    """The customer's hash after one event (a purchase adds to F and M; a click counts)."""
    ts = to_epoch_ms(event["ts"])
    out = {
        "last_event": str(max(ts, int(state.get(b"last_event", 0)))),
        "purchases": state.get(b"purchases", b"0").decode(),
        "monetary": state.get(b"monetary", b"0").decode(),
        "clicks": state.get(b"clicks", b"0").decode(),
    }
    if event["type"] == "purchase":
        out["purchases"] = str(int(out["purchases"]) + 1)
        out["monetary"] = str(float(out["monetary"]) + float(event["amount"]))
    elif event["type"] == "click":
        out["clicks"] = str(int(out["clicks"]) + 1)
    return out


def main() -> None:
    settings = Settings.from_env()
    app = faust_app(settings, app_id=sys.argv[1])
    events = app.topic(settings.events_topic, key_type=bytes, value_type=bytes)
    client = connect_async(settings.redis_url)
    counter = f"{settings.namespace}:naive:{sys.argv[1]}"
    model = preprocessing.StandardScaler() | cluster.KMeans(n_clusters=5, seed=42)

    @app.agent(events)
    async def per_event(stream):
        async for value in stream:
            event = json.loads(value)
            key = f"{settings.namespace}:naive:c:{{{event['customer_id']}}}"
            state = fold(await client.hgetall(key), event)
            await client.hset(key, mapping=state)
            x = {
                "frequency": math.log1p(int(state["purchases"])),
                "monetary": math.log1p(float(state["monetary"])),
                "clicks": math.log1p(int(state["clicks"])),
            }
            model.learn_one(x)
            model.predict_one(x)
            await client.hincrby(counter, "records", 1)

    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
