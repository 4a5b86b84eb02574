"""State that outlives a gateway process: stored responses across a restart (SQLite), and
responses and per-key limits shared by two gateway processes through a real redis-server.
The stores themselves: tests/test_response_store.py, tests/test_limits.py."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import FIXTURES, start_gateway
from tests.redis_server import redis_server  # noqa: F401  (fixture)

EDGE_POLICY = FIXTURES / "edge_policy.yaml"


def sdk(server, key: str = "k-free") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key=key, max_retries=0)


def test_responses_chain_across_a_restart_and_belong_to_their_key(fake_upstream, tmp_path):
    env = {"UPSTREAM_BASE": fake_upstream.base + "/v1", "TANDEM_DATA_DIR": str(tmp_path)}
    server = start_gateway(EDGE_POLICY, env)
    try:
        first = sdk(server).responses.create(model="transcript", input="My name is Ada.")
        with pytest.raises(openai.NotFoundError):  # another key: as if it never existed
            sdk(server, "k-metered").responses.retrieve(first.id)
        with pytest.raises(openai.BadRequestError) as caught:  # above max_record_bytes: refused up front
            sdk(server).responses.create(model="transcript", input="y" * 3000)
        assert caught.value.code == "input_too_large"
    finally:
        server.stop()
    server = start_gateway(EDGE_POLICY, env)
    try:
        second = sdk(server).responses.create(model="transcript", input="Who am I?", previous_response_id=first.id)
        assert second.output_text.splitlines()[0] == "user: My name is Ada."
        assert (tmp_path / "responses.db").exists()
    finally:
        server.stop()


def test_two_gateways_share_responses_and_limits_through_redis(fake_upstream, redis_server):
    redis_server.flush()
    env = {"UPSTREAM_BASE": fake_upstream.base + "/v1", "RESPONSES_STORE": redis_server.url,
           "LIMITS_STORE": redis_server.url}
    one, two = start_gateway(EDGE_POLICY, env), start_gateway(EDGE_POLICY, env)
    try:
        first = sdk(one).responses.create(model="transcript", input="My name is Ada.")
        second = sdk(two).responses.create(model="transcript", input="Who am I?", previous_response_id=first.id)
        assert second.output_text.splitlines()[0] == "user: My name is Ada."
        assert sdk(one).responses.retrieve(second.id).id == second.id
        # k-metered may send 3 requests a minute in all, whichever replica takes them
        statuses = [httpx.post(server.base + "/v1/chat/completions", timeout=30,
                               json={"model": "ok", "messages": [{"role": "user", "content": "hi"}]},
                               headers={"authorization": "Bearer k-metered"}).status_code
                    for server in (one, two, one, two)]
        assert statuses == [200, 200, 200, 429]
    finally:
        one.stop()
        two.stop()
