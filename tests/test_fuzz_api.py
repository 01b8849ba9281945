"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis), against a real server on
loopback, with the bearer token: no request may produce a 5xx, a response outside the schema, or hang.

Bounded: ``MAX_EXAMPLES`` per operation (13 operations) and a per-request timeout, so the module runs in well under a minute.
The hostile image corpus (tests/hostile) is also uploaded through the real socket.
"""

from __future__ import annotations

import json
import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from conftest import AUTH, ServerProcess
from hostile import corpus
from schemathesis.checks import (content_type_conformance, ignored_auth, not_a_server_error,
                                 response_schema_conformance, status_code_conformance)

# Per operation; raise it for a longer hunt: STRATA_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_api.py
MAX_EXAMPLES = int(os.environ.get("STRATA_FUZZ_EXAMPLES", "60"))
REQUEST_TIMEOUT_S = 10
# positive_data_acceptance is left out on purpose: the schema can only say "params is a string"; most strings the
# fuzzer makes are not valid parameter JSON and are (rightly) refused with 400.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          ignored_auth]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("fuzz"), args=("--max-queue", "4"))
    yield server
    server.stop()


def _schema_document() -> dict:
    """The schema the server serves, built without starting anything (no lifespan: no worker, no folders)."""
    from pathlib import Path

    from inference_server.app import Settings, create_app

    return create_app(Settings(data_dir=Path("unused"), token="unused", backend="cpu")).openapi()


# schemathesis.pytest.from_fixture would fetch it from the running server, but does not work with pytest 9.
schema = schemathesis.openapi.from_dict(_schema_document())


def test_served_schema_is_the_fuzzed_schema(fuzz_server):
    assert fuzz_server.get("/openapi.json").json() == _schema_document()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_breaks_the_server(case, fuzz_server):
    case.call_and_validate(base_url=fuzz_server.url, headers=AUTH, checks=CHECKS, timeout=REQUEST_TIMEOUT_S)


def test_server_still_healthy_after_fuzzing(fuzz_server):
    health = fuzz_server.get("/v1/health").json()
    assert health["status"] == "ok" and health["worker_restarts"] == 0
    assert not any("Traceback" in line for line in fuzz_server.stderr_lines), "".join(fuzz_server.stderr_lines)


@pytest.mark.parametrize("params", [
    '{"layers": 1e400}', '{"layers": null}', '{"seed": -1}', '{"seed": 1e30}', '{"true_cfg_scale": NaN}',
    '{"prompt": ' + json.dumps("x" * 5000) + '}', '{"parent_job": 5, "parent_layer": "0"}', '{"__class__": 1}',
    '{"extra": {}}', '"{}"', "null", "\u0000", '{"layers": 2, "layers": 3, "resolution": [640]}',
    '{"cfg_normalize": "yes"}', '{"offload": 7}', '{"preset": null}',
])
def test_strange_params_are_4xx(fuzz_server, params):
    png = next(case.data for case in corpus() if case.name == "trailing_garbage_png")
    response = fuzz_server.post("/v1/jobs", files={"image": ("a.png", png, "image/png")}, data={"params": params})
    assert 400 <= response.status_code < 500, (params, response.status_code, response.text)
    assert isinstance(response.json()["detail"], str)


def test_hostile_corpus_over_the_real_socket(fuzz_server):
    # The refused files, through uvicorn's real multipart handling (test_images.py runs the accepted ones).
    for case in corpus():
        if case.status == 200:
            continue
        response = fuzz_server.post("/v1/jobs", files={"image": ("x", case.data, "application/octet-stream")},
                                    data={"params": '{"layers": 2}'})
        assert response.status_code == case.status, (case.name, response.text)
        assert case.words in response.json()["detail"], case.name


def test_malformed_multipart_is_4xx(fuzz_server):
    for body, content_type in [
        (b"--xyz\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc", "multipart/form-data; boundary=xyz"),
        (b"garbage", "multipart/form-data"),
        (b"garbage", "multipart/form-data; boundary="),
        (b'{"layers": 2}', "application/json"),
        (b"\xff" * 1000, "application/x-www-form-urlencoded"),
    ]:
        response = requests.post(fuzz_server.url + "/v1/jobs", data=body, timeout=10,
                                 headers=dict(AUTH, **{"Content-Type": content_type}))
        assert 400 <= response.status_code < 500, (body[:20], content_type, response.status_code, response.text)
