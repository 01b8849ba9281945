# SPDX-License-Identifier: GPL-3.0-or-later
"""The HTTP API as a client sees it: a real server on loopback for the end-to-end paths, TestClient for the many
small request/response cases."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import requests
from conftest import AUTH, TOKEN, make_client, png_bytes_of, sample_image, sample_png, wait_client
from PIL import Image


def _submit(client, image_bytes=None, params=None, **kwargs):
    files = {"image": ("in.png", image_bytes, "image/png")} if image_bytes is not None else None
    data = {"params": json.dumps(params or {})} if params is not None or image_bytes is None else None
    return client.post("/v1/jobs", files=files, data=data, **kwargs)


# ------------------------------------------------------------------ end to end, real server


def test_layers_auto_lets_the_decomposer_choose_and_the_manifest_says_so(server):
    job_id = server.submit(png_bytes_of(sample_image()), layers="auto")
    record = server.wait(job_id)
    assert record["status"] == "succeeded", record
    assert record["params"]["layers"] == "auto" and 2 <= record["layers"] <= 16
    manifest = server.get(f"/v1/jobs/{job_id}/manifest").json()
    assert manifest["layer_count"] == {"requested": "auto", "returned": record["layers"], "chosen_by_backend": True}
    assert any(note.startswith("layers: auto") for note in record["notes"])


def test_submit_poll_fetch_layers_and_manifest(server):
    image = sample_image()
    job_id = server.submit(png_bytes_of(image), layers=3, seed=7)
    record = server.wait(job_id)
    assert record["status"] == "succeeded", record
    assert record["layers"] == 3 and record["params"]["layers"] == 3 and record["params"]["seed"] == 7

    manifest = server.get(f"/v1/jobs/{job_id}/manifest").json()
    assert (manifest["width_px"], manifest["height_px"]) == image.size
    assert [entry["index"] for entry in manifest["layers"]] == [0, 1, 2]

    layers = []
    for index in range(3):
        response = server.get(f"/v1/jobs/{job_id}/layers/{index}.png")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        layers.append(np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA")))
    assert all(layer.shape == (image.height, image.width, 4) for layer in layers)

    preview = server.get(f"/v1/jobs/{job_id}/preview.png")
    composite = np.asarray(Image.open(io.BytesIO(preview.content)).convert("RGB")).astype(int)
    # The layers recompose the picture the user sent.
    assert np.abs(composite - np.asarray(image).astype(int)).mean() < 8

    # The files live in the job folder, as the Blender add-on and the exporters expect.
    folder = server.data_dir / "jobs" / job_id
    names = {p.name for p in folder.iterdir()}
    assert {"job.json", "manifest.json", "preview.png", "layer_00.png", "layer_02.png"} <= names


def test_health_reports_backend_and_queue(server):
    health = server.get("/v1/health").json()
    assert health["status"] == "ok" and health["backend"] == "cpu" and health["device"] == "cpu"
    assert health["queue_length"] == 0 and isinstance(health["version"], str)


def test_recursive_decomposition_keeps_the_tree(server):
    parent_id = server.submit(sample_png(), layers=2)
    assert server.wait(parent_id)["status"] == "succeeded"
    child_id = server.submit(None, layers=2, parent_job=parent_id, parent_layer=0)
    child = server.wait(child_id)
    assert child["status"] == "succeeded", child
    assert child["parent"] == {"job": parent_id, "layer": 0}
    child_manifest = server.get(f"/v1/jobs/{child_id}/manifest").json()
    assert child_manifest["parent"] == {"job": parent_id, "layer": 0}
    assert f"layer 0 of job {parent_id}" in " ".join(child_manifest["notes"])

    # The child's input is exactly the parent's layer 0.
    parent_layer = server.get(f"/v1/jobs/{parent_id}/layers/0.png").content
    child_preview = server.get(f"/v1/jobs/{child_id}/preview.png").content
    layer_rgba = np.asarray(Image.open(io.BytesIO(parent_layer)).convert("RGBA")).astype(float)
    child_rgba = np.asarray(Image.open(io.BytesIO(child_preview)).convert("RGBA")).astype(float)
    assert np.array_equal(layer_rgba[..., 3], child_rgba[..., 3])
    # ... and the sub-layers recompose it: colours too (premultiplied, so fully transparent pixels don't count).
    premultiplied = lambda rgba: rgba[..., :3] * rgba[..., 3:] / 255.0  # noqa: E731
    assert np.abs(premultiplied(child_rgba) - premultiplied(layer_rgba)).mean() <= 1.0

    assert server.get(f"/v1/jobs/{parent_id}").json()["children"] == {"0": [child_id]}
    assert server.get(f"/v1/jobs/{parent_id}/manifest").json()["children"] == {"0": [child_id]}


@pytest.mark.parametrize("params, status, words", [
    ({"layers": 2, "parent_job": "0" * 32, "parent_layer": 0}, 404, "no job"),
    ({"layers": 2, "parent_job": "../../etc", "parent_layer": 0}, 404, "32 lowercase hex"),
    ({"layers": 2, "parent_job": "PARENT", "parent_layer": 9}, 404, "there is no layer 9"),
    ({"layers": 2, "parent_job": "PARENT"}, 400, "needs both parent_job and parent_layer"),
])
def test_recursive_decomposition_errors(server, params, status, words):
    parent_id = server.submit(sample_png(), layers=2)
    server.wait(parent_id)
    params = {key: parent_id if value == "PARENT" else value for key, value in params.items()}
    response = server.post("/v1/jobs", data={"params": json.dumps(params)})
    assert response.status_code == status and words in response.json()["detail"], response.text


def test_security_on_the_real_socket(server):
    assert requests.get(server.url + "/v1/health", timeout=10).status_code == 401
    for wrong in ("Bearer " + TOKEN[:-1] + "x", "Basic " + TOKEN, TOKEN, "Bearer", "Bearer " + TOKEN + "x"):
        assert requests.get(server.url + "/v1/health", headers={"Authorization": wrong}, timeout=10).status_code == 401
    assert requests.get(server.url + "/v1/health", headers={"Authorization": "bearer " + TOKEN}, timeout=10).ok
    foreign = dict(AUTH, Origin="https://evil.example")
    response = requests.post(server.url + "/v1/jobs", headers=foreign, timeout=10,
                             files={"image": ("a.png", sample_png(), "image/png")})
    assert response.status_code == 403 and "Origin" in response.json()["detail"]
    local = dict(AUTH, Origin=server.url)
    assert requests.get(server.url + "/v1/health", headers=local, timeout=10).status_code == 200


# ------------------------------------------------------------------ request/response cases, in process


def test_missing_token_is_401_and_says_how(client):
    response = client.get("/v1/health", headers={"Authorization": ""})
    assert response.status_code == 401 and "Bearer" in response.json()["detail"]
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("origin", ["http://evil.com", "null", "http://127.0.0.1.evil.com", "https://localhost"])
def test_foreign_origin_is_403(client, origin):
    response = client.get("/v1/health", headers={"Origin": origin})
    assert response.status_code == 403


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8765", "http://localhost", "http://localhost:3000"])
def test_local_origin_is_allowed(client, origin):
    assert client.get("/v1/health", headers={"Origin": origin}).status_code == 200


def test_dns_rebinding_host_is_403(client):
    response = client.get("/v1/health", headers={"Host": "attacker.example:8765"})
    assert response.status_code == 403 and "Host" in response.json()["detail"]


@pytest.mark.parametrize("params, words", [
    ({"layers": 0}, "layers must be between 1 and 16, got 0"),
    ({"layers": 100}, "layers must be between 1 and 16, got 100"),
    ({"layers": "4"}, 'layers must be an integer or "auto"'),
    ({"layers": "Auto "}, 'layers must be an integer or "auto"'),
    ({"layres": 4}, "unknown parameter(s): layres"),
    ({"resolution": 800}, "resolution must be 640 or 1024"),
    ({"backend": "qwen"}, "this server runs the 'cpu' backend"),
    ({"backend": "tpu"}, "backend must be one of"),
])
def test_bad_params_are_400_with_the_reason(client, params, words):
    response = _submit(client, sample_png(), params)
    assert response.status_code == 400 and words in response.json()["detail"], response.text


def test_params_must_be_a_json_object(client):
    for text, words in (("{layers: 4}", "could not parse"), ("[1, 2]", "got list")):
        response = client.post("/v1/jobs", files={"image": ("a.png", sample_png(), "image/png")}, data={"params": text})
        assert response.status_code == 400 and words in response.json()["detail"]


def test_unknown_form_field_is_400(client):
    response = client.post("/v1/jobs", files={"image": ("a.png", sample_png(), "image/png")},
                           data={"params": "{}", "layers": "3"})
    assert response.status_code == 400 and "unknown form field(s): layers" in response.json()["detail"]


def test_no_image_is_400(client):
    response = client.post("/v1/jobs", data={"params": "{}"})
    assert response.status_code == 400 and "'image'" in response.json()["detail"]


def test_image_sent_as_text_is_400_and_params_may_be_a_file(client):
    # A form that names the picture without a filename arrives as text; say how to send it instead of guessing.
    response = client.post("/v1/jobs", data={"image": "photo.png", "params": "{}"})
    assert response.status_code == 400 and "send the picture as a file part" in response.json()["detail"]
    # curl -F params=@params.json sends the parameters as a file: read like the text field.
    response = client.post("/v1/jobs", files={"image": ("a.png", sample_png(), "image/png"),
                                              "params": ("params.json", b'{"layers": 2}', "application/json")})
    assert response.status_code == 202, response.text
    assert wait_client(client, response.json()["id"])["params"]["layers"] == 2


def test_not_an_image_is_400(client):
    response = _submit(client, b"%PDF-1.7 hello")
    assert response.status_code == 400 and "PDF" in response.json()["detail"]


def test_unknown_job_and_layer_out_of_range_are_404(client):
    assert client.get("/v1/jobs/" + "a" * 32).status_code == 404
    assert client.get("/v1/jobs/not-a-job").status_code == 404
    job_id = _submit(client, sample_png(), {"layers": 2}).json()["id"]
    assert wait_client(client, job_id)["status"] == "succeeded"
    response = client.get(f"/v1/jobs/{job_id}/layers/2.png")
    assert response.status_code == 404 and "0–1" in response.json()["detail"]
    assert client.get(f"/v1/jobs/{job_id}/layers/-1.png").status_code == 404


def test_cancel_finished_job_is_409(client):
    job_id = _submit(client, sample_png(), {"layers": 2}).json()["id"]
    wait_client(client, job_id)
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 409 and "already succeeded" in response.json()["detail"]


def test_upload_over_the_limit_is_413(tmp_path):
    with make_client(tmp_path, max_upload_bytes=50_000) as small:
        big = png_bytes_of(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)))
        response = _submit(small, big)
        assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_image_over_the_pixel_limit_is_413(tmp_path):
    with make_client(tmp_path, max_pixels=50 * 50) as small:
        response = _submit(small, png_bytes_of(sample_image(100, 100)))
        assert response.status_code == 413 and "MP" in response.json()["detail"]


def test_openapi_schema_declares_the_upload(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    # The picture is a file part (not "binary or null", which multipart clients send as text); params is JSON.
    image = body["multipart/form-data"]["schema"]["properties"]["image"]
    assert image["format"] == "binary" and "anyOf" not in image
    assert body["multipart/form-data"]["encoding"]["params"]["contentType"] == "application/json"
    assert "202" in schema["paths"]["/v1/jobs"]["post"]["responses"]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_wrong_method_is_405_naming_every_allowed_method(client):
    response = client.request("OPTIONS", "/v1/jobs")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}
    assert client.delete("/v1/health").headers["allow"] in ("GET", "GET, HEAD")


def test_chunked_upload_without_length_is_capped_too(start_server):
    server = start_server(args=("--max-upload-mib", "0.05"))

    def body():  # a generator: requests sends it chunked, with no Content-Length to check up front
        for _ in range(100):
            yield b"x" * 4096

    response = requests.post(server.url + "/v1/jobs", data=body(), timeout=30,
                             headers=dict(AUTH, **{"Content-Type": "multipart/form-data; boundary=b"}))
    assert response.status_code == 413 and "MiB limit" in response.json()["detail"]
    assert server.get("/v1/health").status_code == 200


def test_deleted_job_files_are_404_not_500(client):
    job_id = _submit(client, sample_png(), {"layers": 2}).json()["id"]
    wait_client(client, job_id)
    folder = client.app.state.manager.jobs_dir / job_id
    (folder / "layer_01.png").unlink()
    (folder / "manifest.json").unlink()
    for path in ("layers/1.png", "manifest"):
        response = client.get(f"/v1/jobs/{job_id}/{path}")
        assert response.status_code == 404 and "missing on disk" in response.json()["detail"]
    assert client.get(f"/v1/jobs/{job_id}/layers/0.png").status_code == 200


def test_job_status_carries_the_backends_notes(client):
    # A flat image holds one layer: the status says why fewer than the requested 3 came back.
    flat = Image.new("RGB", (48, 32), (40, 90, 160))
    job_id = _submit(client, png_bytes_of(flat), {"layers": 3}).json()["id"]
    record = wait_client(client, job_id)
    assert record["status"] == "succeeded" and record["layers"] < 3
    assert any("fewer than the 3 requested" in note for note in record["notes"])


def test_data_folder_that_cannot_be_written_is_507_and_the_server_recovers(tmp_path):
    # Disk full or the data folder moved away: the upload is refused saying where and what to do; nothing half-made.
    with make_client(tmp_path) as local:
        jobs = tmp_path / "jobs"
        jobs.rename(tmp_path / "jobs-away")
        jobs.write_text("a file where the jobs folder was")
        response = _submit(local, sample_png(), {"layers": 2})
        assert response.status_code == 507, response.text
        assert "could not store the job" in response.json()["detail"] and "--data-dir" in response.json()["detail"]
        jobs.unlink()
        (tmp_path / "jobs-away").rename(jobs)
        job_id = _submit(local, sample_png(), {"layers": 2}).json()["id"]
        assert wait_client(local, job_id)["status"] == "succeeded"


def test_auto_backend_that_falls_back_to_the_cpu_says_why(start_server):
    # This machine has no CUDA GPU (CI neither): `auto` runs the CPU decomposer, and the log, /v1/health and the
    # job's notes (status and manifest) name the reason instead of switching silently.
    server = start_server(args=("--backend", "auto"))
    health = server.get("/v1/health").json()
    assert health["backend"] == "cpu"
    reason = health["auto_fallback"]
    assert "CUDA" in reason or "torch" in reason, reason
    job = server.wait(server.submit(sample_png(), layers=3))
    assert job["status"] == "succeeded", job
    note = f"backend auto runs the CPU decomposer, not Qwen-Image-Layered: {reason}"
    assert note in job["notes"]
    assert note in server.get(f"/v1/jobs/{job['id']}/manifest").json()["notes"]
    assert any(reason in line for line in server.stderr_lines), server.stderr_lines
