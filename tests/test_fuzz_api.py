# SPDX-License-Identifier: GPL-3.0-or-later
"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis), against a real server on
loopback, with the bearer token: no request may produce a 5xx, a response outside the schema, or hang.

Bounded: ``MAX_EXAMPLES`` per operation (13 operations) and a per-request timeout, so the module runs in well under
a minute.
The hostile image corpus (tests/hostile) is also uploaded through the real socket.

A schema cannot say "a decodable PNG" or "a JSON string matching contentSchema", so random strings and bytes only
reach the error paths. A ``flatmap_case`` hook mixes in requests that are valid by construction: for the layout
exports a layout within the layout's published JSON Schema with one PNG ``layer_<i>`` part per layer, for
``POST /v1/jobs`` a small PNG of a random mode and drawn parameters. Hypothesis then explores both kinds.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import requests
import schemathesis
from conftest import AUTH, ServerUnderTest, png_bytes_of
from hostile import corpus
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

# Per operation; raise it for a longer hunt: STRATA_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_api.py
MAX_EXAMPLES = int(os.environ.get("STRATA_FUZZ_EXAMPLES", "60"))
# The same examples on every run (Hypothesis seeds itself from the test's name; schemathesis and Hypothesis are
# pinned in pyproject's test extra), so a CI run fails only for a change in this repository: random draws now and
# then stop inside schemathesis itself (4.32.5: "ValueError: Unsupported type: 'Binary'" from jsonschema_rs while it
# filters a negative multipart body of POST /v1/exports/pptx), a generator bug that failed a run once. A hunt for
# new failures draws new examples on every run: STRATA_FUZZ_RANDOM=1.
RANDOM_EXAMPLES = os.environ.get("STRATA_FUZZ_RANDOM") == "1"
REQUEST_TIMEOUT_S = 10
# positive_data_acceptance is left out on purpose: the schema can only say "params is a string"; most strings the
# fuzzer makes are not valid parameter JSON and are (rightly) refused with 400.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          ignored_auth]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    server = ServerUnderTest(tmp_path_factory.mktemp("fuzz"), args=("--max-queue", "4"))
    yield server
    server.stop()


def _schema_document() -> dict:
    """The schema the server serves, built without starting anything (no lifespan: no worker, no folders)."""
    from pathlib import Path

    from inference_server.app import Settings, create_app

    return create_app(Settings(data_dir=Path("unused"), token="unused", backend="cpu")).openapi()


# schemathesis.pytest.from_fixture would fetch it from the running server, but does not work with pytest 9.
schema = schemathesis.openapi.from_dict(_schema_document())
LAYOUT_OPERATIONS = ("/v1/exports/pptx", "/v1/exports/psd")
STATUSES: dict[str, set[int]] = {}  # "POST /v1/jobs" -> status codes the fuzz test saw
# Modes a layer PNG may have; all are converted to RGBA as job uploads are (palette and 16-bit grey included).
PNG_MODES = ("RGBA", "RGB", "L", "LA", "P", "I;16")


@st.composite
def small_pngs(draw, min_side_px: int = 1, max_side_px: int = 24) -> bytes:
    width_px, height_px = draw(st.integers(min_side_px, max_side_px)), draw(st.integers(min_side_px, max_side_px))
    mode = draw(st.sampled_from(PNG_MODES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (height_px, width_px), dtype=np.uint16))  # 16-bit grey
    else:
        image = Image.fromarray(rng.integers(0, 256, (height_px, width_px, 4), dtype=np.uint8), "RGBA")
        image = image.convert("RGB").convert("P") if mode == "P" else image.convert(mode)
    return png_bytes_of(image)


# Layouts within the published layout schema (test_layout_schema_matches_the_parser keeps the two in step), with the
# frame and placements kept small: big frames are valid but cost seconds each by design (their pixel budget has its
# own test in test_export_api.py).
# Hypothesis text has no lone surrogates; JSON can carry one ("\\ud83d": half an emoji), so some names have one.
NAMES = st.text(max_size=40) | st.builds(lambda text: text + "\ud83d", st.text(max_size=8))
_PLACED_LAYER = st.fixed_dictionaries(
    {"x_px": st.floats(-400, 400), "y_px": st.floats(-400, 400),
     "width_px": st.floats(1e-3, 400), "height_px": st.floats(1e-3, 400)},
    optional={"name": NAMES, "opacity": st.floats(0, 1), "visible": st.booleans()},
)
_LAYOUT = st.fixed_dictionaries(
    {"width_px": st.integers(1, 96), "height_px": st.integers(1, 96), "layers": st.lists(_PLACED_LAYER, min_size=1,
                                                                                         max_size=4)},
    optional={"name": NAMES},
)


@st.composite
def valid_layout_bodies(draw, with_original: bool) -> dict:
    layout = draw(_LAYOUT)
    body = {"layout": json.dumps(layout)}
    for index in range(len(layout["layers"])):
        body[f"layer_{index}"] = draw(small_pngs())
    if with_original and draw(st.booleans()):
        body["with_original"] = draw(st.sampled_from(["true", "false"]))
        if draw(st.booleans()):
            body["original"] = draw(small_pngs())
    return body


@st.composite
def valid_job_bodies(draw) -> dict:
    params = draw(st.fixed_dictionaries({}, optional={
        "layers": st.integers(0, 17), "seed": st.integers(0, 2**63 - 1),
        "resolution": st.sampled_from([640, 1024, 512]),
        "backend": st.sampled_from(["auto", "cpu", "qwen"]), "preset": st.sampled_from(["exact", "fast", "turbo"]),
    }))
    # Jobs need 16 px a side; some drawn images are smaller on purpose.
    return {"image": draw(small_pngs(min_side_px=12, max_side_px=48)), "params": json.dumps(params)}


@schema.hook
def flatmap_case(context, case):
    operation = context.operation
    if operation.method.upper() != "POST" or case.media_type != "multipart/form-data":
        return st.just(case)
    if operation.path in LAYOUT_OPERATIONS:
        valid = valid_layout_bodies(with_original=operation.path.endswith("pptx"))
    elif operation.path == "/v1/jobs":
        valid = valid_job_bodies()
    else:
        return st.just(case)

    def with_body(body: dict):
        derived = case.derive(keep_auth=True)
        derived.body = body
        derived.multipart_content_types = None  # the schema's encoding applies
        return derived

    return st.one_of(st.just(case), valid.map(with_body))


def test_served_schema_is_the_fuzzed_schema(fuzz_server):
    assert fuzz_server.get("/openapi.json").json() == _schema_document()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=not RANDOM_EXAMPLES, database=None)
def test_no_request_breaks_the_server(case, fuzz_server):
    response = case.call_and_validate(base_url=fuzz_server.url, headers=AUTH, checks=CHECKS, timeout=REQUEST_TIMEOUT_S)
    STATUSES.setdefault(f"{case.method.upper()} {case.path}", set()).add(response.status_code)


def test_fuzzing_reached_the_success_paths():
    # Runs after the fuzz test (file order): the valid-by-construction bodies got through, so the fuzzer exercised
    # decoding, layout parsing and both exporters, not only the error paths.
    if not STATUSES:
        pytest.skip("the fuzz test did not run in this session")
    assert 202 in STATUSES["POST /v1/jobs"], STATUSES["POST /v1/jobs"]
    for path in LAYOUT_OPERATIONS:
        assert 200 in STATUSES[f"POST {path}"], (path, STATUSES[f"POST {path}"])


def test_layout_schema_matches_the_parser():
    from inference_server.exports.export_layout import LAYER_KEYS, LAYOUT_KEYS, MAX_LAYOUT_LAYERS

    for path in LAYOUT_OPERATIONS:
        body = _schema_document()["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        layout = body["schema"]["properties"]["layout"]["contentSchema"]
        assert set(layout["properties"]) == LAYOUT_KEYS
        assert set(layout["properties"]["layers"]["items"]["properties"]) == LAYER_KEYS
        assert body["encoding"][f"layer_{MAX_LAYOUT_LAYERS - 1}"]["contentType"] == "image/png"


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
