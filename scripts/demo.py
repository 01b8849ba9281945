# SPDX-License-Identifier: GPL-3.0-or-later
"""Strata end to end, headless, in one command: image → layers → parallax stack in Blender → video + PPTX/PSD.

    .venv-blender/bin/python scripts/demo.py [--image PATH] [--out out/demo] [--size 512x384] [--layers 4]
                                             [--move TRUCK_RIGHT]

Runs in the Blender venv (the bpy module). On a fresh checkout it
  1. takes ``--image PATH`` or writes a sample poster (``benchmarks.samples``, run by the server venv's Python),
  2. enables the add-on from this repository and points it at a local CPU server, which the add-on starts itself
     (``AddonServerProcess``, the same path a Blender user takes),
  3. saves an empty .blend so the layer images land beside it (``//strata/<job>/layer_XX.png``),
  4. decomposes the poster with the add-on's Decompose operator and builds the camera-exact plane stack,
  5. keys a looping parallax camera move and renders a preview (MP4 if this Blender has FFmpeg, and a GIF),
  6. exports the camera view as PowerPoint and Photoshop files twice: at the peak of the move (the frame where the
     layers are shifted most, ``parallax_view.*``) and at rest (frame 1, the original framing, ``rest_view.*``),
  7. exports the whole stack with its camera move as a GLB (glTF) and as a self-contained web page (``web/index.html``),
and prints the files it wrote. A re-run into the same folder replaces the previous run's layer and job folders.
With ``--depth-model`` (a Depth Anything folder or Hub id) the server also estimates depth per layer and the layers
get Relief. The server venv is ``$STRATA_SERVER_PYTHON`` or ``<repo>/.venv/bin/python``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADDON = "blender_addon"

GIF_SCRIPT = r'''
import sys
from PIL import Image
out, fps, frames = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
images = [Image.open(path).convert("RGB") for path in frames]
# One shared adaptive palette keeps flat colours from flickering between frames.
palette = images[len(images) // 2].quantize(colors=255, method=Image.Quantize.MEDIANCUT)
frames_p = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
tmp = out + ".tmp.gif"
frames_p[0].save(tmp, save_all=True, append_images=frames_p[1:], duration=round(1000 / fps), loop=0, optimize=False)
import os; os.replace(tmp, out)
'''


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, help="decompose this image instead of the generated sample poster")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo", help="output folder (default out/demo)")
    parser.add_argument("--size", default="512x384", help="sample image size WxH (default 512x384)")
    parser.add_argument("--layers", type=int, default=4, help="layers to decompose into (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="sample image seed (default 0)")
    # A truck keeps the planes parallel to the sensor, so the exported view is exact (an orbit exports each layer
    # as its bounding rectangle, with a warning).
    parser.add_argument("--move", default="TRUCK_RIGHT", help="camera preset, played as a loop (default TRUCK_RIGHT)")
    parser.add_argument("--frames", type=int, default=48, help="length of the looping move (default 48)")
    parser.add_argument("--amplitude", type=float, default=None,
                        help="camera travel as a fraction of the stack depth (default: the add-on's default for the "
                             "stack, where the front layer moves ~4.5%% of the frame relative to the background)")
    parser.add_argument("--coverage", default="OVERSCAN", choices=("OVERSCAN", "ZOOM", "NONE"),
                        help="how the frame stays covered (default OVERSCAN: enlarge the background plane)")
    parser.add_argument("--preview-percent", type=int, default=50, help="preview resolution %% (default 50)")
    parser.add_argument("--depth-model", default=os.environ.get("STRATA_DEPTH_MODEL"), metavar="ID_OR_DIR",
                        help="estimate depth per layer with this Depth Anything model (default $STRATA_DEPTH_MODEL; "
                             "unset: flat layers, no depth)")
    parser.add_argument("--relief", type=float, default=0.6, help="Relief of every layer with --depth-model")
    parser.add_argument("--server-python", default=os.environ.get("STRATA_SERVER_PYTHON",
                                                                   str(REPO / ".venv" / "bin" / "python")))
    return parser.parse_args(argv)


def step(message):
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    width_px, height_px = (int(v) for v in args.size.lower().split("x"))
    server_python = args.server_python
    if not Path(server_python).exists():
        print(f"demo: no server Python at {server_python}; run scripts/setup.sh or set STRATA_SERVER_PYTHON",
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    written: list[Path] = []

    # A re-run replaces the previous run's layers (beside the .blend) and server jobs instead of piling them up.
    shutil.rmtree(out / "strata", ignore_errors=True)
    if "BLENDER_USER_RESOURCES" not in os.environ:
        shutil.rmtree(out / "blender-user", ignore_errors=True)

    # 1. The image: the user's, or a sample drawn by the server package (Blender's numpy can't import its
    #    dependencies)
    if args.image is not None:
        image_path = args.image.resolve()
        if not image_path.is_file():
            print(f"demo: no image at {image_path}", file=sys.stderr)
            return 2
        step(f"decomposing {image_path}")
    else:
        image_path = out / "poster.png"
        step(f"writing a {width_px}×{height_px} sample poster")
        subprocess.run([server_python, "-c", "import sys; from benchmarks.samples import save_sample; "
                        "save_sample(sys.argv[1], 'flat', int(sys.argv[2]), int(sys.argv[3]), seed=int(sys.argv[4]))",
                        str(image_path), str(width_px), str(height_px), str(args.seed)],
                       cwd=REPO, check=True, timeout=300)
        written.append(image_path)

    # 2. Blender with the add-on. Its user folders (server job data, preferences) go under the output folder,
    #    so the demo leaves ~/.config/blender alone; set before bpy is imported, which reads them.
    os.environ.setdefault("BLENDER_USER_RESOURCES", str(out / "blender-user"))
    import bpy  # noqa: I001  (bpy first: it puts Blender's own modules such as addon_utils on the path)
    import addon_utils

    sys.path.insert(0, str(REPO))
    if addon_utils.enable(ADDON, default_set=True, handle_error=None) is None:
        print("demo: the Strata add-on failed to register", file=sys.stderr)
        return 1
    addon = sys.modules[ADDON]
    job_watch = sys.modules[f"{ADDON}.job_watch"]
    connection = sys.modules[f"{ADDON}.connection"]
    scene_stack = sys.modules[f"{ADDON}.scene.stack"]
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.connection = 'START'
    prefs.server_python = server_python
    prefs.server_source_dir = str(REPO)
    prefs.backend = 'cpu'
    step(f"add-on {addon.__name__} enabled; the add-on starts a CPU server with {server_python}")

    try:
        # 3. An empty scene saved first, so layers are written beside the .blend with relative paths
        for obj in list(bpy.data.objects):
            bpy.data.objects.remove(obj)
        scene = bpy.context.scene
        blend_path = out / "poster.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend_path))

        # 4. Decompose through the operator; job_watch.tick() is what Blender's timer calls
        scene.strata.image_path = str(image_path)
        scene.strata.layers_auto = False  # the demo asks for --layers (the panel's default is Auto)
        scene.strata.layers = args.layers
        if args.depth_model:
            os.environ["STRATA_DEPTH_MODEL"] = args.depth_model  # the server the add-on starts inherits it
            scene.strata.depth = True
        step(f"decomposing into {args.layers} layers (starting the server on first use)")
        if bpy.ops.strata.decompose() != {'FINISHED'}:
            return 1
        deadline = time.monotonic() + 600
        while job_watch.tick() is not None:
            if time.monotonic() > deadline:
                print("demo: the decomposition did not finish in 10 minutes", file=sys.stderr)
                return 1
            time.sleep(0.1)
        if scene.strata.job_status != "succeeded":
            print(f"demo: decomposition {scene.strata.job_status}: {scene.strata.job_message}", file=sys.stderr)
            return 1
        root = next(obj for obj in scene.objects if obj.strata.role == 'ROOT')
        layers = scene_stack.stack_layers(root)
        written += sorted(Path(bpy.path.abspath(obj.strata.source_path)) for obj in layers)
        if args.depth_model:
            root.strata.relief_all = args.relief
            written += sorted(Path(bpy.path.abspath(obj.strata.source_path).replace("layer_", "depth_"))
                              for obj in layers)
            step(f"relief {args.relief} on every layer")

        # 5. Parallax move, saved, previewed. The amplitude is the operator's stack-aware default (the front layer
        #    slides ~4.5% of the frame past the background) unless --amplitude is given; the background plane is
        #    overscanned for the move, so the framing stays as it is.
        root.strata.depth_spacing_m = 1.0
        move = {"preset": args.move, "duration_frames": args.frames, "loop": True, "coverage": args.coverage}
        if args.amplitude is not None:
            move["amplitude"] = args.amplitude
        if bpy.ops.strata.animate_camera(**move) != {'FINISHED'}:
            return 1
        # Logged from the stack as it is saved (after the depth spacing above), so the log and the .blend agree.
        step(f"stack '{root.name}': " + ", ".join(f"{obj.name} @ {obj.strata.depth_m:.2f} m"
                                                  for obj in scene_stack.stack_layers(root)))
        bpy.ops.wm.save_mainfile()
        written.append(blend_path)
        step(f"rendering the preview ({scene.frame_end - scene.frame_start + 1} frames, Cycles on the CPU)")
        preview_base = out / "parallax"
        if bpy.app.build_options.codec_ffmpeg:
            bpy.ops.strata.render_preview(filepath=str(preview_base), resolution_percentage=args.preview_percent,
                                          video=True, samples=4)
            written.append(Path(str(preview_base) + ".mp4"))
        with tempfile.TemporaryDirectory(prefix="strata-demo-frames-") as frames_dir:
            bpy.ops.strata.render_preview(filepath=str(Path(frames_dir) / "frame"),
                                          resolution_percentage=args.preview_percent, video=False, samples=4)
            frames = sorted(str(p) for p in Path(frames_dir).glob("frame_*.png"))
            gif_path = out / "parallax.gif"
            subprocess.run([server_python, "-c", GIF_SCRIPT, str(gif_path), str(scene.render.fps), *frames],
                           check=True, timeout=300)
            written.append(gif_path)

        # 6. The camera view as layered files: at the peak of the move (half-way through the loop, the layers
        #    shifted most against each other) and at rest (frame 1: the original framing)
        peak_frame = scene.frame_start + args.frames // 2
        for name, frame, what in (("parallax_view", peak_frame, "at the peak of the move"),
                                  ("rest_view", scene.frame_start, "at rest")):
            scene.frame_set(frame)
            for kind in ("PPTX", "PSD"):
                path = out / f"{name}.{kind.lower()}"
                step(f"exporting the camera view {what} (frame {frame}) as {kind}")
                if bpy.ops.strata.export_view(kind=kind, filepath=str(path)) != {'FINISHED'}:
                    return 1
                written.append(path)
        scene.frame_set(scene.frame_start)

        # 7. The whole stack with its move, for game engines (glTF) and for the web
        glb_path = out / "parallax.glb"
        step("exporting the stack as GLB and as a web page")
        if bpy.ops.strata.export_gltf(filepath=str(glb_path)) != {'FINISHED'}:
            return 1
        if bpy.ops.strata.export_web(directory=str(out / "web")) != {'FINISHED'}:
            return 1
        written += [glb_path, out / "web" / "index.html"]
    finally:
        connection.stop_server()

    step(f"done in {time.perf_counter() - started:.1f} s; wrote:")
    for path in written:
        size = path.stat().st_size if path.exists() else 0
        print(f"  {path}  ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    status = main()
    # The bpy module of Blender 4.2-4.5 can crash (4.2) or hang (4.5) in its own exit handlers once an add-on with
    # property callbacks was registered; everything is written and listed by now, so leave without them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
