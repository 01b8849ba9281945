# SPDX-License-Identifier: GPL-3.0-or-later
"""Export endpoints on a real ``strata serve`` (CPU backend) on loopback, as the Blender add-on calls them."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import requests
from conftest import AUTH
from PIL import Image
from pptx import Presentation
from psd_tools import PSDImage

from benchmarks.samples import make_flat_poster
from inference_server.layers import png_bytes

WIDTH_PX, HEIGHT_PX = 160, 120


@pytest.fixture(scope="module")
def finished_job(server):
    """A succeeded job on the shared server, decomposed from the flat poster."""
    composite, _ = make_flat_poster(WIDTH_PX, HEIGHT_PX, seed=1)
    job_id = server.submit(png_bytes(composite), layers=3, seed=0)
    record = server.wait(job_id, timeout_s=120)
    assert record["status"] == "succeeded", record
    return job_id


def test_job_exports_pptx_psd_and_zip(server, finished_job):
    manifest = server.get(f"/v1/jobs/{finished_job}/manifest").json()
    names = [entry["name"] for entry in manifest["layers"] if entry["bbox_px"]]

    response = server.get(f"/v1/jobs/{finished_job}/export.pptx", params={"with_original": "true"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == \
        "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    assert f'filename="strata-{finished_job}.pptx"' in response.headers["content-disposition"]
    presentation = Presentation(io.BytesIO(response.content))
    assert [shape.name for shape in presentation.slides[0].shapes] == ["Original"]
    assert [shape.name for shape in presentation.slides[1].shapes] == names

    response = server.get(f"/v1/jobs/{finished_job}/export.psd")
    assert response.status_code == 200 and response.headers["content-type"] == "image/vnd.adobe.photoshop"
    psd = PSDImage.open(io.BytesIO(response.content))
    assert [layer.name for layer in psd] == names
    preview = np.asarray(Image.open(io.BytesIO(server.get(f"/v1/jobs/{finished_job}/preview.png").content)))
    merged = np.asarray(psd.composite()).astype(int)
    assert np.abs(merged[..., 3] - preview[..., 3]).max() <= 1
    assert np.abs(merged[..., :3] - preview[..., :3])[preview[..., 3] == 255].max() <= 1

    response = server.get(f"/v1/jobs/{finished_job}/export.zip")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        top = f"strata-{finished_job}"
        assert json.loads(archive.read(f"{top}/manifest.json"))["layers"] == manifest["layers"]
        assert {f"{top}/preview.png", f"{top}/input.png", f"{top}/layer_00.png"} <= set(archive.namelist())


def test_recursive_child_job_exports(server, finished_job):
    child_id = server.submit(None, layers=2, parent_job=finished_job, parent_layer=1, seed=0)
    record = server.wait(child_id, timeout_s=120)
    assert record["status"] == "succeeded", record
    for kind in ("pptx", "psd", "zip"):
        response = server.get(f"/v1/jobs/{child_id}/export.{kind}")
        assert response.status_code == 200, (kind, response.text)
    psd = PSDImage.open(io.BytesIO(server.get(f"/v1/jobs/{child_id}/export.psd").content))
    child_preview = np.asarray(Image.open(io.BytesIO(server.get(f"/v1/jobs/{child_id}/preview.png").content)))
    assert np.asarray(psd.composite()).shape == child_preview.shape

    # The parent's zip carries the whole tree: the re-decomposed layer's sub-layers nest under children/, and the
    # zipped manifest points at them with paths that resolve once unzipped.
    with zipfile.ZipFile(io.BytesIO(server.get(f"/v1/jobs/{finished_job}/export.zip").content)) as archive:
        top = f"strata-{finished_job}"
        manifest = json.loads(archive.read(f"{top}/manifest.json"))
        assert manifest["children"]["1"] == [f"children/{child_id}"]
        child_manifest = json.loads(archive.read(f"{top}/children/{child_id}/manifest.json"))
        assert child_manifest["parent"] == {"job": finished_job, "layer": 1}
        for entry in child_manifest["layers"]:
            assert archive.read(f"{top}/children/{child_id}/{entry['file']}") == \
                server.get(f"/v1/jobs/{child_id}/layers/{entry['index']}.png").content


def test_job_export_errors_say_what_is_wrong(server):
    response = server.get(f"/v1/jobs/{'f' * 32}/export.pptx")
    assert response.status_code == 404 and "no job" in response.json()["detail"]
    response = server.get("/v1/jobs/../../etc/export.zip")
    assert response.status_code == 404
    assert requests.get(server.url + f"/v1/jobs/{'f' * 32}/export.zip", timeout=10).status_code == 401


def layout_request(layers_rgba, entries, name="Camera view"):
    layout = {"width_px": WIDTH_PX, "height_px": HEIGHT_PX, "name": name, "layers": entries}
    files = {f"layer_{index}": (f"layer_{index}.png", png_bytes(rgba), "image/png")
             for index, rgba in enumerate(layers_rgba)}
    return {"data": {"layout": json.dumps(layout)}, "files": files}


def blender_view():
    """Layers as Blender sends them: full-size PNGs, one moved and scaled, one half transparent, one hidden."""
    _, layers = make_flat_poster(WIDTH_PX, HEIGHT_PX, seed=2)
    entries = [{"name": f"Plane {index}", "x_px": 0, "y_px": 0, "width_px": WIDTH_PX, "height_px": HEIGHT_PX,
                "opacity": 1.0, "visible": True} for index in range(len(layers))]
    entries[1].update(x_px=12.5, y_px=-8, width_px=WIDTH_PX * 1.2, height_px=HEIGHT_PX * 1.2)
    entries[2].update(opacity=0.4)
    entries[-1].update(visible=False)
    return layers, entries


def test_post_layout_exports_pptx_and_psd(server):
    from inference_server.exports.export_layout import Layout

    layers, entries = blender_view()
    request = layout_request(layers, entries)
    expected = Layout.from_json(json.loads(request["data"]["layout"]),
                                {i: f[1] for i, f in enumerate(request["files"].values())})

    response = server.post("/v1/exports/pptx", **request)
    assert response.status_code == 200, response.text
    assert 'filename="Camera view.pptx"' in response.headers["content-disposition"]
    shapes = list(Presentation(io.BytesIO(response.content)).slides[0].shapes)
    assert [shape.name for shape in shapes] == [entry["name"] for entry in entries]
    assert abs(shapes[1].left / 9525 - expected.cropped().layers[1].x_px) <= 1

    response = server.post("/v1/exports/psd", **layout_request(layers, entries))
    assert response.status_code == 200, response.text
    psd = PSDImage.open(io.BytesIO(response.content))
    assert [layer.visible for layer in psd] == [entry["visible"] for entry in entries]
    assert psd[2].opacity == round(0.4 * 255)
    render = expected.render().astype(np.float64)
    merged = np.asarray(psd.composite()).astype(np.float64)
    premul = lambda rgba: rgba[..., :3] * rgba[..., 3:] / 255.0  # noqa: E731
    assert np.abs(premul(merged) - premul(render)).max() <= 2.0


def test_post_layout_with_original_slide(server):
    layers, entries = blender_view()
    request = layout_request(layers, entries)
    request["files"]["original"] = ("original.png", png_bytes(layers[0]), "image/png")
    request["data"]["with_original"] = "true"
    response = server.post("/v1/exports/pptx", **request)
    assert response.status_code == 200, response.text
    assert len(Presentation(io.BytesIO(response.content)).slides) == 2


@pytest.mark.parametrize("change, status, message", [
    (lambda r: r["files"].pop("layer_1"), 400, "missing image part(s) ['layer_1']"),
    (lambda r: r["data"].pop("layout"), 400, "missing form field 'layout'"),
    (lambda r: r["data"].update(layout="{not json"), 400, "form field 'layout' is not valid JSON"),
    (lambda r: r["data"].update(layout=json.dumps({**json.loads(r["data"]["layout"]), "width_px": -3})), 400,
     "layout width_px must be between 1 and 8192, got -3"),
    (lambda r: r["data"].update(surprise="1"), 400, "unexpected form part 'surprise'"),
    (lambda r: r["files"].update(layer_0=("a.png", b"not a png", "image/png")), 400, "layer_0 is not a readable image"),
])
def test_post_layout_errors_teach(server, change, status, message):
    layers, entries = blender_view()
    request = layout_request(layers, entries)
    change(request)
    response = server.post("/v1/exports/psd", **request)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_post_layout_refuses_foreign_origin(server):
    layers, entries = blender_view()
    response = requests.post(server.url + "/v1/exports/pptx", headers={**AUTH, "Origin": "https://evil.example"},
                             timeout=10, **layout_request(layers, entries))
    assert response.status_code == 403


def test_post_layout_stretched_far_past_a_big_frame_is_413_not_minutes_of_work(server):
    # Four 2×2 PNGs (a few hundred bytes) stretched to 9000 px in an 8192 px frame would be 324 megapixels for the
    # PSD to resample and hold (over a minute, 8+ GB); refused before any of that, with what to change.
    tiny = np.full((2, 2, 4), 200, np.uint8)
    entry = {"x_px": -10, "y_px": -10, "width_px": 9000, "height_px": 9000}
    request = layout_request([tiny] * 4, [entry] * 4)
    request["data"]["layout"] = json.dumps({**json.loads(request["data"]["layout"]), "width_px": 8192,
                                            "height_px": 8192})
    for kind in ("psd", "pptx"):
        response = server.post(f"/v1/exports/{kind}", **request)
        assert response.status_code == 413, response.text
        assert "megapixels" in response.json()["detail"] and "smaller frame" in response.json()["detail"]
    assert server.get("/v1/health").json()["status"] == "ok"


def test_post_layout_names_with_control_characters_still_export(server):
    # Names come from Blender objects and the layout JSON; XML (PowerPoint) cannot hold control characters, so they
    # become U+FFFD instead of failing the export (PSD keeps them); a lone surrogate fits no format and becomes U+FFFD.
    layers, entries = blender_view()
    entries[0]["name"] = "Sky\x00\x1b"
    entries[1]["name"] = "Half \ud83d"  # a lone UTF-16 surrogate (half an emoji) is valid JSON text
    request = layout_request(layers, entries, name="View\x07 1")
    response = server.post("/v1/exports/pptx", **request)
    assert response.status_code == 200, response.text
    presentation = Presentation(io.BytesIO(response.content))
    assert presentation.slides[0].shapes[0].name == "Sky\ufffd\ufffd"
    assert presentation.core_properties.title == "View\ufffd 1"
    response = server.post("/v1/exports/psd", **layout_request(layers, entries))
    assert response.status_code == 200, response.text
    psd = PSDImage.open(io.BytesIO(response.content))
    assert psd[0].name.startswith("Sky") and psd[1].name == "Half \ufffd"
