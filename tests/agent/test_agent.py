"""The Faust agent, broker-free (agent.test_context()), against a real Redis:
decode -> fold -> state write -> send, with the sends captured."""

from __future__ import annotations

import asyncio
import json
from unittest.mock import AsyncMock, patch

import pytest

from streams.processing.app import create_app
from streams.settings import Settings
from streams.state.keys import Keys
from streams.state.store import connect, read_stat, read_states

pytestmark = pytest.mark.integration  # needs Redis (no Kafka)


def _delivered(**_):
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


async def _drive(settings: Settings, payloads: list[bytes]) -> tuple[list, list, list]:
    pipeline = create_app(settings)
    pipeline.app.finalize()
    pipeline.app.conf.store = "memory://"
    dlq_send = AsyncMock(side_effect=_delivered)
    change_send = AsyncMock(side_effect=_delivered)
    features_send = AsyncMock(side_effect=_delivered)
    keys = Keys(settings.namespace)
    with (
        patch.object(pipeline.topics["dlq"], "send", dlq_send),
        patch.object(pipeline.topics["segment_changes"], "send", change_send),
        patch.object(pipeline.topics["features"], "send", features_send),
    ):
        async with pipeline.apply_events.test_context() as agent:
            for raw in payloads:
                await agent.put(key=b"k", value=raw, wait=False)
            client = connect(settings.redis_url)
            for _ in range(100):
                if read_stat(client, keys, "records") >= len(payloads):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)  # let the sends of the last batch finish
    return dlq_send.call_args_list, change_send.call_args_list, features_send.call_args_list


def test_agent_writes_state_and_routes_outputs(rtba_env):
    settings = Settings.from_env(rtba_env)
    good = {"event_id": "e1", "customer_id": "c1", "type": "purchase", "order_id": "o1",
            "amount": "30.00", "ts": "2024-05-01T12:00:00Z"}  # fmt: skip
    payloads = [json.dumps(good).encode(), b"{broken", json.dumps(good).encode()]
    dlq_calls, change_calls, feature_calls = asyncio.run(_drive(settings, payloads))

    [state] = read_states(connect(settings.redis_url), Keys(settings.namespace), ["c1"])
    assert state.purchases == 1 and str(state.monetary) == "30.00"
    assert state.segment == "New"

    assert len(dlq_calls) == 1
    headers = dict(dlq_calls[0].kwargs["headers"])
    assert dlq_calls[0].kwargs["value"] == b"{broken"
    assert headers["rtba.dlq.reason"] == b"invalid_json"

    assert len(change_calls) == 1  # the repeated order changed nothing
    change = json.loads(change_calls[0].kwargs["value"])
    assert (change["from"], change["to"], change["customer_id"]) == (None, "New", "c1")

    # The trainer's evidence: the one applied event, a batch's samples in one record.
    samples = [s for call in feature_calls for s in json.loads(call.kwargs["value"])]
    assert [cid for cid, _ in samples] == ["c1"]
    assert samples[0][1]["features"] and samples[0][1]["last_event_ms"] > 0
