#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Does an exported stack GLB load elsewhere? Khronos glTF-Validator, then three.js's GLTFLoader in headless Chromium.

    .venv/bin/python scripts/check_glb_threejs.py out/demo/parallax.glb --reference out/demo/poster.png

Installs ``three`` and ``gltf-validator`` from npm into ``--npm-dir`` (once), validates the file with node, serves the
GLB, three.js and a small page on 127.0.0.1, loads it with ``GLTFLoader``, renders it through the GLB's own camera
(the rest pose, frame 1) at the reference image's size in Chromium (SwiftShader WebGL) and prints a table: validator
errors/warnings, meshes, unlit materials, cameras, animations, and the PSNR of three.js's render against the
reference (the input image, which Blender's frame 1 reproduces). three.js blends in linear light, Blender here on sRGB
values like image editors, so soft edges differ a little. Not run by the tests (it needs npm); a measurement.
"""

from __future__ import annotations

import argparse
import functools
import html
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image

THREE_VERSION = "0.170.0"
VALIDATOR_VERSION = "2.0.0-dev.3.10"

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>html,body{margin:0;background:#000;overflow:hidden}</style>
<script type="importmap">{"imports": {"three": "./node_modules/three/build/three.module.js",
  "three/addons/": "./node_modules/three/examples/jsm/"}}</script></head>
<body><pre id="result" style="position:fixed;left:-9999px"></pre>
<script type="module">
import * as THREE from 'three';
import {GLTFLoader} from 'three/addons/loaders/GLTFLoader.js';
const W = __WIDTH__, H = __HEIGHT__;
const renderer = new THREE.WebGLRenderer({antialias: false, preserveDrawingBuffer: true});
renderer.setPixelRatio(1);
renderer.setSize(W, H);
document.body.prepend(renderer.domElement);
new GLTFLoader().load('stack.glb', gltf => {
  let meshes = 0, unlit = 0, textured = 0, blended = 0;
  gltf.scene.traverse(o => {
    if (!o.isMesh) return;
    meshes++;
    if (o.material.type === 'MeshBasicMaterial') unlit++;
    if (o.material.map) textured++;
    if (o.material.transparent) blended++;
  });
  const camera = gltf.cameras[0];
  camera.aspect = W / H;
  camera.updateProjectionMatrix();
  renderer.render(gltf.scene, camera);
  document.getElementById('result').textContent = JSON.stringify({meshes, unlit, textured, blended,
    cameras: gltf.cameras.length, animations: gltf.animations.length,
    tracks: gltf.animations.reduce((n, a) => n + a.tracks.length, 0)});
}, undefined, error => { document.getElementById('result').textContent = JSON.stringify({error: String(error)}); });
</script></body></html>
"""

VALIDATE_JS = """
const v = require('gltf-validator'); const fs = require('fs');
v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[1]))).then(r => console.log(JSON.stringify({
  errors: r.issues.numErrors, warnings: r.issues.numWarnings,
  messages: r.issues.messages.filter(m => m.severity < 2).map(m => m.code + ' ' + m.message).slice(0, 5)})));
"""


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ensure_npm_packages(npm_dir: Path) -> None:
    if (npm_dir / "node_modules" / "three").is_dir() and (npm_dir / "node_modules" / "gltf-validator").is_dir():
        return
    npm_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--silent", "--prefix", str(npm_dir), f"three@{THREE_VERSION}",
                    f"gltf-validator@{VALIDATOR_VERSION}"], check=True, timeout=600)


def chromium(args: list[str], url: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("check_glb_threejs: no chromium on PATH (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="strata-chromium-") as profile:
        return subprocess.run([binary, "--headless=new", "--no-sandbox", f"--user-data-dir={profile}",
                               "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--hide-scrollbars",
                               "--force-device-scale-factor=1", "--virtual-time-budget=20000", *args, url],
                              capture_output=True, text=True, timeout=180)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("glb", type=Path)
    parser.add_argument("--reference", type=Path, required=True, help="what frame 1 should show (the input image)")
    parser.add_argument("--save-render", type=Path, help="keep three.js's render here (PNG)")
    parser.add_argument("--npm-dir", type=Path, default=Path(tempfile.gettempdir()) / "strata-npm-check")
    args = parser.parse_args(argv)
    ensure_npm_packages(args.npm_dir)
    validator = json.loads(subprocess.run(["node", "-e", VALIDATE_JS, str(args.glb.resolve())], cwd=args.npm_dir,
                                          capture_output=True, text=True, check=True, timeout=120).stdout)
    reference = np.asarray(Image.open(args.reference).convert("RGB"))
    height_px, width_px = reference.shape[:2]
    with tempfile.TemporaryDirectory(prefix="strata-three-") as site:
        site = Path(site)
        shutil.copyfile(args.glb, site / "stack.glb")
        os.symlink(args.npm_dir / "node_modules", site / "node_modules")
        (site / "index.html").write_text(PAGE.replace("__WIDTH__", str(width_px)).replace("__HEIGHT__",
                                                                                         str(height_px)))
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.RequestHandlerClass.log_message = lambda *a, **k: None
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        try:
            dom = chromium(["--dump-dom"], url).stdout
            shot = site / "three.png"
            # Chromium keeps a minimum window size: render in a larger window and crop the canvas (top left).
            chromium([f"--screenshot={shot}", f"--window-size={max(width_px, 800)},{max(height_px, 600)}"], url)
            rendered = np.asarray(Image.open(shot).convert("RGB"))[:height_px, :width_px]
            if args.save_render:
                shutil.copyfile(shot, args.save_render)
        finally:
            server.shutdown()
    start = dom.find('<pre id="result"')
    text = dom[dom.find(">", start) + 1:dom.find("</pre>", start)]
    loaded = json.loads(html.unescape(text) or "{}")
    rows = [("glTF-Validator errors / warnings", f"{validator['errors']} / {validator['warnings']}"),
            *[(f"three.js {key}", value) for key, value in loaded.items()],
            ("three.js render vs reference (PSNR dB)", f"{psnr_db(rendered, reference):.1f}")]
    for message in validator["messages"]:
        rows.append(("validator", message))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0 if validator["errors"] == 0 and loaded.get("meshes") and "error" not in loaded else 1


if __name__ == "__main__":
    raise SystemExit(main())
