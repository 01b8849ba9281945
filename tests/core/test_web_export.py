# SPDX-License-Identifier: GPL-3.0-or-later
"""The web page writer (bpy-free): one self-contained file, layers back to front, nothing fetched from elsewhere."""

import base64
import json
import re

import numpy as np
import pytest

from blender_addon.core import web_export

PNG_1PX = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
                           "AAAABJRU5ErkJggg==")


def quad(distance_m, name="layer"):
    positions = np.array([(-1, -1, -distance_m), (1, -1, -distance_m), (1, 1, -distance_m), (-1, 1, -distance_m)],
                         float)
    return web_export.WebLayer(name=name, png=PNG_1PX, positions_m=positions, triangles=np.array([[0, 1, 2],
                                                                                                 [0, 2, 3]]),
                               projection=(0.5, 0.5, 0.5, 0.5))


def scene(*layers, **extra):
    return web_export.WebScene(width_px=64, height_px=48, frame_centre=(0.0, 0.0), frame_half=(0.36, 0.27),
                               layers=list(layers), **extra)


def embedded_scene(page):
    match = re.search(r'<script type="application/json" id="strata-scene">(.*?)</script>', page, re.S)
    return json.loads(match.group(1).replace("<\\/", "</"))


def test_page_is_one_self_contained_file(tmp_path):
    path = web_export.write_web_page(tmp_path / "web", scene(quad(5.0), quad(6.0, "back")))
    assert [p.name for p in (tmp_path / "web").iterdir()] == ["index.html"]
    page = open(path, encoding="utf-8").read()
    # Nothing is loaded from anywhere: no URL schemes but the page's own data: URLs, no src/href attributes.
    assert not re.search(r"https?://", page)
    assert not re.search(r"""\s(src|href)\s*=\s*["'][^"']""", page)
    data = embedded_scene(page)
    assert [layer["name"] for layer in data["layers"]] == ["back", "layer"], "drawn back to front"
    assert all(layer["image"].startswith("data:image/png;base64,") for layer in data["layers"])
    positions = np.frombuffer(base64.b64decode(data["layers"][0]["positions"]), "<f4").reshape(-1, 3)
    assert positions[:, 2] == pytest.approx(-6.0)
    assert data["pointer_travel_m"] == pytest.approx(web_export.POINTER_TRAVEL_FRACTION * 5.0)


def test_names_cannot_end_the_script_element():
    page = web_export.page_html(scene(quad(5.0, "</script><script>alert(1)</script>")))
    assert page.count("</script>") == 2  # the scene's and the player's own
    assert embedded_scene(page)["layers"][0]["name"] == "</script><script>alert(1)</script>"


def test_camera_move_and_limits():
    frames = [list(np.eye(4).ravel()), list(np.eye(4).ravel())]
    data = web_export.scene_json(scene(quad(5.0), camera_frames=frames, camera_zoom=[1.0, 1.2], fps=30.0))
    assert len(data["camera_frames"]) == 2 and data["camera_zoom"] == [1.0, 1.2] and data["fps"] == 30.0
    with pytest.raises(web_export.WebExportError, match="no visible layers"):
        web_export.scene_json(scene())
    big = quad(5.0)
    big.positions_m = np.zeros((70000, 3)) - [0, 0, 5.0]
    with pytest.raises(web_export.WebExportError, match="65535"):
        web_export.scene_json(scene(big))
