"""Scenario b of benchmarks/pipeline.py: a do-nothing Faust agent on rtba's own Faust app
(streams.processing.app.faust_app: the same transport, serializers and batching as the worker). It
takes the events topic in rtba's batches and counts them in Redis, one HINCRBY per batch,
so the harness reads its progress the way it reads the worker's.

Run by the harness: python -m benchmarks.noop_agent APP_ID (environment as for rtba)
"""

from __future__ import annotations

import sys

from streams.processing.app import faust_app
from streams.processing.logs import Worker
from streams.settings import Settings
from streams.state.redis_client import connect_async


def main() -> None:
    settings = Settings.from_env()
    app = faust_app(settings, app_id=sys.argv[1])
    events = app.topic(settings.events_topic, key_type=bytes, value_type=bytes)
    client = connect_async(settings.redis_url)  # a single server or a Cluster
    counter = f"{settings.namespace}:noop:{sys.argv[1]}"

    @app.agent(events)
    async def count(stream):
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            await client.hincrby(counter, "records", len(batch))

    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
