"""Schemathesis against the gateway's own OpenAPI document: generated requests for every
endpoint (bodies from the wire models' schemas) never get a 500 from Tandem, and every
error is OpenAI's envelope. A bounded number of examples per endpoint."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings

#: statuses a backend failure may legitimately give (the fake upstream is real; Tandem's own
#: code never answers 500)
BACKEND_STATUSES = {502, 503, 504}
EXAMPLES = 15


def test_generated_requests_get_no_server_error(gateway):
    schema = schemathesis.openapi.from_dict(httpx.get(gateway.base + "/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions", "/v1/responses"}
    seen: dict[str, set[int]] = {}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case):
            response = case.call(base_url=gateway.base, timeout=30)
            seen.setdefault(f"{operation.method.upper()} {operation.path}", set()).add(response.status_code)
            assert response.status_code != 500, response.text
            assert response.status_code < 500 or response.status_code in BACKEND_STATUSES, response.text
            if response.status_code >= 400:
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"} and error["message"]

        check()
    assert len(seen) == len(operations)
