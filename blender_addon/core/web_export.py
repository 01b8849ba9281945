# SPDX-License-Identifier: GPL-3.0-or-later
"""The stack as a self-contained web page: one ``index.html`` that plays the layers as a parallax scene (WebGL 1).

Numbers in, files out (no bpy). ``scene/stack_export.py`` gathers a ``WebScene`` from Blender: every layer's mesh in the
rest camera's space (a quad, or a relief grid), its rest-camera projection constants (``core.relief``), its PNG and
opacity; the rest camera's frame; and the camera's keyed move, sampled per frame. This module writes it out.

The page needs nothing but itself: the player is plain WebGL written here, the layers are PNG data URLs inside the
file, and the scene is inline JSON, so it works opened from disk (``file://``) with no network and loads nothing from
anywhere else. Textures are sampled nearest and read through the same rest-camera projection as Blender's material,
so the page at rest shows the image pixel for pixel. It follows the pointer (the camera slides across the frame),
the mouse wheel (dolly), zooming in just enough that the background's edges stay out of view, and can play the
camera move exported from Blender.

Query parameters (for links and tests): ``?pointer=x,y`` (−1…1, a fixed pointer position), ``?frame=N`` (show one
frame of the exported move), ``?play=1`` (play the move on load).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .job_runner import write_bytes_atomic

PAGE_NAME = "index.html"
# The pointer slides the camera up to this fraction of the front layer's distance sideways (the wheel dollies up to
# twice as much): enough parallax to read depth, small enough that the background's edges stay mostly covered.
POINTER_TRAVEL_FRACTION = 0.04


class WebExportError(ValueError):
    """A scene that cannot be written as a page (no layers, a mesh too large for 16-bit indices)."""


@dataclass
class WebLayer:
    name: str
    png: bytes
    positions_m: np.ndarray  # N×3, rest camera space (x right, y up, -z forward)
    triangles: np.ndarray  # M×3 vertex indices
    projection: tuple[float, float, float, float]  # (a_u, b_u, a_v, b_v): u = a_u·x/(-z) + b_u …
    opacity: float = 1.0
    extend: bool = False  # texture repeats its edge outside [0, 1] (overscan), else transparent


@dataclass
class WebScene:
    width_px: int
    height_px: int
    # The rest camera's frame at distance 1: centre (x, y) and half extents (x, y).
    frame_centre: tuple[float, float]
    frame_half: tuple[float, float]
    layers: list[WebLayer]
    fps: float = 24.0
    # The keyed move, per frame: 4×4 camera-to-rest-space matrices (row-major) and the zoom (lens / rest lens).
    camera_frames: list[list[float]] = field(default_factory=list)
    camera_zoom: list[float] = field(default_factory=list)
    title: str = "Strata parallax"
    # Where the page's camera sits at rest (the camera at the scene's first frame), row-major, and its zoom.
    rest_pose: list[float] = field(default_factory=lambda: [1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0])
    rest_zoom: float = 1.0


def _b64(array: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def scene_json(scene: WebScene) -> dict:
    """The page's inline scene: plain JSON, arrays as base64 little-endian (float32 positions, uint16 indices)."""
    if not scene.layers:
        raise WebExportError("the stack has no visible layers to export")
    layers: list[dict[str, Any]] = []
    nearest_m = None
    for layer in scene.layers:
        positions = np.asarray(layer.positions_m, np.float64).reshape(-1, 3)
        if len(positions) > 65535:
            raise WebExportError(f"layer {layer.name!r} has {len(positions)} vertices; the page allows 65535 "
                                 f"(lower the relief grid)")
        distance = float(-positions[:, 2].max()) if len(positions) else 1.0
        nearest_m = distance if nearest_m is None else min(nearest_m, distance)
        layers.append({
            "name": layer.name,
            "image": "data:image/png;base64," + base64.b64encode(layer.png).decode("ascii"),
            "positions": _b64(positions, "<f4"),
            "indices": _b64(np.asarray(layer.triangles).reshape(-1), "<u2"),
            "projection": [float(v) for v in layer.projection],
            "opacity": float(layer.opacity),
            "extend": bool(layer.extend),
            "rest_distance_m": float(np.mean(-positions[:, 2])),
        })
    # Back to front, as the layers composite.
    layers.sort(key=lambda entry: -entry["rest_distance_m"])
    return {
        "format": "strata.web/1",
        "title": scene.title,
        "width_px": int(scene.width_px),
        "height_px": int(scene.height_px),
        "frame_centre": [float(v) for v in scene.frame_centre],
        "frame_half": [float(v) for v in scene.frame_half],
        "pointer_travel_m": POINTER_TRAVEL_FRACTION * (nearest_m or 1.0),
        "fps": float(scene.fps),
        "rest_pose": [float(v) for v in scene.rest_pose],
        "rest_zoom": float(scene.rest_zoom),
        "camera_frames": [[float(v) for v in matrix] for matrix in scene.camera_frames],
        "camera_zoom": [float(v) for v in scene.camera_zoom],
        "layers": layers,
    }


def page_html(scene: WebScene) -> str:
    data = json.dumps(scene_json(scene), separators=(",", ":"))
    # Inside <script type="application/json"> only "</" could end the element early.
    data = data.replace("</", "<\\/")
    title = (scene.title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    return (_PAGE_TEMPLATE.replace("__TITLE__", title).replace("__SCENE__", data)
            .replace("__WIDTH__", str(int(scene.width_px))).replace("__HEIGHT__", str(int(scene.height_px))))


def write_web_page(folder: str | os.PathLike, scene: WebScene) -> str:
    """Write ``folder/index.html`` (atomically) and return its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(os.fspath(folder), PAGE_NAME)
    write_bytes_atomic(path, page_html(scene).encode("utf-8"))
    return path


_PAGE_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
  html, body { margin: 0; height: 100%; background: #000; overflow: hidden; }
  canvas { display: block; width: 100vw; height: 100vh; object-fit: contain; touch-action: none; }
  #controls { position: fixed; left: 8px; bottom: 8px; font: 12px sans-serif; color: #ddd; opacity: 0.6; }
  #controls button { font: inherit; }
  body.still #controls { display: none; }
</style>
</head>
<body>
<canvas id="view" width="__WIDTH__" height="__HEIGHT__"></canvas>
<div id="controls"><button id="play" type="button">Play camera move</button>
  <span id="hint">move the pointer · scroll to dolly</span></div>
<script type="application/json" id="strata-scene">__SCENE__</script>
<script>
"use strict";
(function () {
  const S = JSON.parse(document.getElementById("strata-scene").textContent);
  const canvas = document.getElementById("view");
  const query = new URLSearchParams(location.search);
  const gl = canvas.getContext("webgl", {alpha: false, antialias: false, premultipliedAlpha: false,
                                           preserveDrawingBuffer: true});
  if (!gl) { document.body.textContent = "This page needs WebGL."; return; }

  const vertexSource = `
    attribute vec3 position;
    uniform mat4 view;
    uniform vec4 frustum;   // centre x, centre y, half x, half y of the frame at distance 1 (zoom applied)
    varying vec3 restPosition;
    void main() {
      restPosition = position;
      vec4 eye = view * vec4(position, 1.0);
      float w = -eye.z;
      float near = 0.01, far = 1000.0;
      float x = (eye.x - frustum.x * w) / frustum.z;
      float y = (eye.y - frustum.y * w) / frustum.w;
      float z = ((far + near) * w - 2.0 * far * near) / (far - near);
      gl_Position = vec4(x, y, z, w);
    }`;
  const fragmentSource = `
    precision highp float;
    uniform sampler2D image;
    uniform vec4 projection;  // u = a_u * x / -z + b_u, v = a_v * y / -z + b_v: what the rest camera saw here
    uniform float opacity;
    uniform bool extendEdges;
    varying vec3 restPosition;
    void main() {
      vec2 uv = vec2(projection.x * restPosition.x / -restPosition.z + projection.y,
                     projection.z * restPosition.y / -restPosition.z + projection.w);
      if (!extendEdges && (uv.x < 0.0 || uv.x > 1.0 || uv.y < 0.0 || uv.y > 1.0)) discard;
      vec4 texel = texture2D(image, clamp(uv, 0.0, 1.0));
      float alpha = texel.a * opacity;
      if (alpha <= 0.0) discard;
      gl_FragColor = vec4(texel.rgb, alpha);
    }`;

  function compile(type, source) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
    return shader;
  }
  const program = gl.createProgram();
  gl.attachShader(program, compile(gl.VERTEX_SHADER, vertexSource));
  gl.attachShader(program, compile(gl.FRAGMENT_SHADER, fragmentSource));
  gl.linkProgram(program);
  gl.useProgram(program);
  const at = name => gl.getUniformLocation(program, name);
  const positionAttribute = gl.getAttribLocation(program, "position");

  function decode(text, Type) {
    const bytes = Uint8Array.from(atob(text), c => c.charCodeAt(0));
    return new Type(bytes.buffer);
  }

  let pending = S.layers.length;
  const layers = S.layers.map(layer => {
    const entry = {layer, count: 0, texture: gl.createTexture()};
    entry.vertices = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, entry.vertices);
    gl.bufferData(gl.ARRAY_BUFFER, decode(layer.positions, Float32Array), gl.STATIC_DRAW);
    entry.indices = gl.createBuffer();
    const indices = decode(layer.indices, Uint16Array);
    entry.count = indices.length;
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, entry.indices);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, indices, gl.STATIC_DRAW);
    const image = new Image();
    image.onload = () => {
      gl.bindTexture(gl.TEXTURE_2D, entry.texture);
      // Straight alpha, bottom row first (v = 0 at the bottom, as in Blender), no colour conversion: the texels
      // are the PNG's values.
      gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, true);
      gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
      gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, image);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
      entry.ready = true;
      pending -= 1;
      if (pending === 0) { document.body.dataset.ready = "1"; draw(); }
    };
    image.src = layer.image;
    return entry;
  });

  // Camera state in the rest camera's space: pose matrix (camera → rest space, row-major) and zoom.
  const state = {pointer: [0, 0], target: [0, 0], dolly: 0, frame: null, playing: false, started: 0};
  const pointerParam = query.get("pointer");
  if (pointerParam) {
    const [x, y] = pointerParam.split(",").map(Number);
    state.pointer = [x || 0, y || 0];
    state.target = state.pointer.slice();
  }
  if (query.get("frame") !== null && S.camera_frames.length) {
    state.frame = Math.max(0, Math.min(S.camera_frames.length - 1, parseInt(query.get("frame"), 10) || 0));
  }
  if (query.get("still") !== null) document.body.classList.add("still");

  function invertRigid(m) {
    // m = [R t; 0 1] row-major → [Rᵀ −Rᵀt; 0 1], column-major for WebGL.
    const r = [[m[0], m[1], m[2]], [m[4], m[5], m[6]], [m[8], m[9], m[10]]];
    const t = [m[3], m[7], m[11]];
    const out = new Float32Array(16);
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 3; j++) out[j * 4 + i] = r[j][i];
      out[12 + i] = -(r[0][i] * t[0] + r[1][i] * t[1] + r[2][i] * t[2]);
    }
    out[15] = 1;
    return out;
  }

  function cameraPose() {
    let pose = S.rest_pose, zoom = S.rest_zoom;
    if (state.frame !== null) {
      pose = S.camera_frames[state.frame];
      zoom = S.camera_zoom[state.frame] || 1;
    }
    const travel = S.pointer_travel_m;
    const moved = pose.slice();
    // The pointer slides the camera in its own plane; the wheel moves it along its view axis.
    const dx = state.pointer[0] * travel, dy = -state.pointer[1] * travel, dz = -state.dolly * 2 * travel;
    moved[3] += pose[0] * dx + pose[1] * dy + pose[2] * dz;
    moved[7] += pose[4] * dx + pose[5] * dy + pose[6] * dz;
    moved[11] += pose[8] * dx + pose[9] * dy + pose[10] * dz;
    // Keep the frame covered: the background plane fills the rest frame only, so as the pointer or the wheel moves
    // the camera, zoom in just enough that its edges stay outside the view (1 at rest: the rest view is exact).
    const back = S.layers.length ? S.layers[0].rest_distance_m : 1;
    const distance = back - dz;
    const cover = Math.max(1,
      S.frame_half[0] * distance / Math.max(1e-6, S.frame_half[0] * back - Math.abs(dx)),
      S.frame_half[1] * distance / Math.max(1e-6, S.frame_half[1] * back - Math.abs(dy)));
    return {view: invertRigid(moved), zoom: zoom * cover};
  }

  function draw() {
    if (pending > 0) return;
    const {view, zoom} = cameraPose();
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(0, 0, 0, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.BLEND);
    gl.blendFuncSeparate(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA, gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    gl.enable(gl.DEPTH_TEST);
    gl.depthFunc(gl.LEQUAL);
    gl.uniformMatrix4fv(at("view"), false, view);
    gl.uniform4f(at("frustum"), S.frame_centre[0] / zoom, S.frame_centre[1] / zoom,
                 S.frame_half[0] / zoom, S.frame_half[1] / zoom);
    gl.uniform1i(at("image"), 0);
    for (const entry of layers) {
      // Back to front; within a layer (a relief grid) the nearest surface wins.
      gl.clear(gl.DEPTH_BUFFER_BIT);
      const layer = entry.layer;
      gl.activeTexture(gl.TEXTURE0);
      gl.bindTexture(gl.TEXTURE_2D, entry.texture);
      gl.uniform4fv(at("projection"), layer.projection);
      gl.uniform1f(at("opacity"), layer.opacity);
      gl.uniform1i(at("extendEdges"), layer.extend ? 1 : 0);
      gl.bindBuffer(gl.ARRAY_BUFFER, entry.vertices);
      gl.enableVertexAttribArray(positionAttribute);
      gl.vertexAttribPointer(positionAttribute, 3, gl.FLOAT, false, 0, 0);
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, entry.indices);
      gl.drawElements(gl.TRIANGLES, entry.count, gl.UNSIGNED_SHORT, 0);
    }
  }

  function animate(now) {
    if (state.playing && S.camera_frames.length) {
      if (!state.started) state.started = now;
      state.frame = Math.floor((now - state.started) / 1000 * S.fps) % S.camera_frames.length;
    }
    draw();
    requestAnimationFrame(animate);
  }

  canvas.addEventListener("pointermove", event => {
    const box = canvas.getBoundingClientRect();
    state.pointer = [Math.max(-1, Math.min(1, 2 * (event.clientX - box.left) / box.width - 1)),
                     Math.max(-1, Math.min(1, 2 * (event.clientY - box.top) / box.height - 1))];
    draw();
  });
  canvas.addEventListener("wheel", event => {
    event.preventDefault();
    state.dolly = Math.max(-1, Math.min(1, state.dolly - event.deltaY / 1000));
    draw();
  }, {passive: false});
  const playButton = document.getElementById("play");
  if (!S.camera_frames.length) playButton.disabled = true;
  playButton.addEventListener("click", () => {
    state.playing = !state.playing;
    state.started = 0;
    if (!state.playing) state.frame = null;
    playButton.textContent = state.playing ? "Stop" : "Play camera move";
  });
  if (query.get("play") === "1" && S.camera_frames.length) playButton.click();
  requestAnimationFrame(animate);
})();
</script>
</body>
</html>
"""
