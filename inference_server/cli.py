# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``strata`` command: ``decompose`` (in-process, with a progress bar), ``serve`` (the HTTP server) and
``export`` (registered by ``inference_server.exports.export_command``).

Exit codes: 0 success, 1 the backend failed (out of memory, model missing), 2 bad input or usage, 130 interrupted.
User mistakes print one ``strata <command>: error: ...`` line, never a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .backends.qwen_tiers import VRAM_CHOICES
from .errors import InvalidInput, StrataError
from .exports.export_command import add_parser as add_export_parser
from .image_input import DEFAULT_MAX_PIXELS
from .params import AUTO_LAYERS, BACKENDS, MAX_LAYERS, MIN_LAYERS, PRESETS, RESOLUTIONS

if TYPE_CHECKING:
    from tqdm import tqdm

TOKEN_ENV = "STRATA_TOKEN"


def _default_data_dir() -> Path:
    """$STRATA_DATA_DIR, else the platform's per-user data folder (~/.local/share/strata on Linux), never the
    working directory: a server started from anywhere finds the same finished jobs."""
    from platformdirs import user_data_dir

    return Path(os.environ.get("STRATA_DATA_DIR") or user_data_dir("strata", appauthor=False))


def _layers(text: str) -> int | str:
    if text.strip().lower() == AUTO_LAYERS:
        return AUTO_LAYERS
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of layers or {AUTO_LAYERS!r}, got {text!r}") from None
    if not MIN_LAYERS <= value <= MAX_LAYERS:
        raise argparse.ArgumentTypeError(
            f"the number of layers must be between {MIN_LAYERS} and {MAX_LAYERS}, got {value}")
    return value


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="qwen = Qwen-Image-Layered on a GPU; cpu = the embedded CPU decomposer; auto = qwen when "
                             "CUDA and the weights are present, else cpu (default)")
    parser.add_argument("--model", metavar="ID_OR_DIR",
                        help="Qwen-Image-Layered weights: Hugging Face id or local folder (default: $STRATA_QWEN_MODEL "
                             "or Qwen/Qwen-Image-Layered)")
    parser.add_argument("--preset", choices=PRESETS,
                        help="speed/memory trade-off of the qwen backend (default exact; lowvram offloads to the CPU)")
    parser.add_argument("--vram", choices=VRAM_CHOICES, default="auto",
                        help="GPU memory tier of the qwen backend, in GB: 80 (bf16), 24 (8-bit), 16 (4-bit "
                             "transformer, 8-bit text encoder), 12 and 8 (4-bit, blocks streamed from RAM); auto "
                             "(default) picks "
                             "from the free VRAM, RAM and the card's fp8 support")
    parser.add_argument("--transformer", metavar="PATH.gguf", type=Path,
                        help="the qwen transformer from a GGUF file (e.g. a community Q8_0 or Q4 build of "
                             "Qwen-Image-Layered); --model still gives the text encoder, VAE and configs")
    parser.add_argument("--gpus", metavar="LIST",
                        help="GPUs for the qwen backend, e.g. 0,1: two GPUs run the two guidance passes at the same "
                             "time (CFG-parallel, same result as one GPU); 4, 6 or 8 GPUs add Ulysses context "
                             "parallel inside each half; 'all' takes every GPU (an even number of them) "
                             "(default: the first GPU)")


def _backend_options(args: argparse.Namespace) -> dict:
    """Constructor options of the qwen backend (the cpu backend takes none)."""
    options = {"model_id": args.model} if args.model else {}
    if args.preset:
        options["preset"] = args.preset
    if args.backend != "cpu":
        options["vram"] = args.vram
        if args.transformer is not None:
            if not args.transformer.is_file():
                raise InvalidInput(f"--transformer {args.transformer}: no such file; give the path of a .gguf file")
            options["transformer_path"] = str(args.transformer.resolve())
    if args.gpus:
        from .backends.qwen_parallel import ParallelLayout, parse_gpus

        if args.backend == "cpu":
            raise InvalidInput("--gpus is for the qwen backend; the cpu backend runs on the processor")
        options["gpus"] = "all" if args.gpus == "all" else parse_gpus(args.gpus)
        if options["gpus"] != "all" and len(options["gpus"]) > 1:
            ParallelLayout.plan(len(options["gpus"]))
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strata", description="Decompose a flat image into editable RGBA layers.")
    parser.add_argument("--version", action="version", version=f"strata {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True

    decompose = subparsers.add_parser("decompose", help="split one image into layers, writing a layer folder",
                                      description="Split IMAGE into N RGBA layers (back to front) and write "
                                                  "layer_00.png…, preview.png and manifest.json into OUT.")
    decompose.add_argument("image", metavar="IMAGE", type=Path,
                           help="an image file, or with --layer a decomposition folder")
    decompose.add_argument("--layer", type=int, metavar="K",
                           help="recursive decomposition: IMAGE is a decomposition folder; split its layer K again "
                                "(the new manifest names its parent, the parent's lists its children)")
    decompose.add_argument("-n", "--layers", type=_layers, default=4,
                           help="number of layers, or 'auto' (as many as the image has; empty and repeated layers "
                                "dropped) (default 4)")
    decompose.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder")
    _add_backend_options(decompose)
    decompose.add_argument("--steps", type=int, dest="num_inference_steps", help="denoising steps (qwen; default 50)")
    decompose.add_argument("--resolution", type=int, choices=RESOLUTIONS, help="model resolution bucket (default 640)")
    decompose.add_argument("--seed", type=int, help="random seed for a reproducible result")
    decompose.add_argument("--prompt", help="describe the image (qwen; default: the model captions it itself)")
    decompose.add_argument("--depth", action="store_true",
                           help="also estimate depth per layer (depth_XX.png, 16-bit; model: $STRATA_DEPTH_MODEL, a "
                                "Hub id or folder, default Depth Anything V2 Small)")
    decompose.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help=argparse.SUPPRESS)
    decompose.add_argument("--force", action="store_true", help="overwrite OUT if it already holds a decomposition")
    decompose.add_argument("--quiet", action="store_true",
                           help="no progress (default: a bar per stage on a terminal, one line per stage when piped)")
    decompose.set_defaults(func=run_decompose)

    refine = subparsers.add_parser(
        "refine", help="bring a layer folder to the original's full resolution with an exact composite",
        description="Refine the layers in LAYERS_DIR (ours, or any folder of layer PNGs, e.g. another tool's at a "
                    "lower resolution) against the original image: alpha upsampled edge-aware, colours re-derived from "
                    "the original, the composite made equal to it within 1/255. Writes layer_XX.png, preview.png "
                    "and manifest.json into OUT.")
    refine.add_argument("layers_dir", metavar="LAYERS_DIR", type=Path, help="folder of layers (back to front)")
    refine.add_argument("--image", type=Path, required=True, metavar="ORIGINAL", help="the original image")
    refine.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder")
    refine.add_argument("--auto", action="store_true", help="drop empty and repeated layers (with a note each)")
    refine.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help=argparse.SUPPRESS)
    refine.add_argument("--force", action="store_true", help="overwrite OUT if it already holds a decomposition")
    refine.add_argument("--quiet", action="store_true", help="no progress bar")
    refine.set_defaults(func=run_refine)

    serve = subparsers.add_parser("serve", help="run the local HTTP server (for the Blender add-on)",
                                  description="Serve the decomposition API on 127.0.0.1. The bearer token comes from "
                                              f"${TOKEN_ENV}; without it one is generated and printed to stderr.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; anything else needs --allow-remote and $STRATA_TOKEN)")
    serve.add_argument("--port", type=int, default=8765,
                       help="port (default 8765; 0 = any free port, printed in the 'listening' line)")
    serve.add_argument("--data-dir", type=Path, default=_default_data_dir(),
                       help="where job folders live (default: $STRATA_DATA_DIR, else the per-user data folder, "
                            "here %(default)s)")
    _add_backend_options(serve)
    serve.add_argument("--max-queue", type=int, default=8, help="queued jobs before new ones get 429 (default 8)")
    serve.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                       help=f"largest accepted image in pixels (default {DEFAULT_MAX_PIXELS})")
    serve.add_argument("--max-upload-mib", type=float, default=64.0, help="largest request body in MiB (default 64)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow binding a non-loopback address (requires $STRATA_TOKEN); the API then answers any "
                            "Host name")
    serve.add_argument("--cancel-grace-s", type=float, default=30.0,
                       help="a running job that ignores a cancel request this long gets its worker restarted "
                            "(default 30 s)")
    serve.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                       help="server log verbosity on stderr (default warning; info adds one line per request)")
    cluster = serve.add_argument_group(
        "many GPUs and machines (Ray Serve; pip install 'strata[ray]')",
        "Jobs run on a Ray Serve deployment of model replicas (one GPU each for qwen, one CPU each for cpu); the "
        "HTTP API, its token and the job folders stay on this machine.")
    cluster.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                         help="run jobs on Ray Serve: without ADDRESS on a private local Ray instance; with ADDRESS "
                              "('auto', or HEAD:6379 of a cluster this machine is a node of) on that cluster")
    cluster.add_argument("--min-replicas", type=int, help="replicas kept running (default 1; 0 frees the GPUs when "
                                                          "idle, the next job waits for a model load)")
    cluster.add_argument("--max-replicas", type=int, help="replicas started when jobs queue up (default: "
                                                          "--min-replicas, or 1)")
    cluster.add_argument("--gpus-per-replica", type=float,
                         help="GPUs each qwen replica reserves (default 1; 2 for a CFG-parallel backend; 0 runs it on "
                              "a CPU, for tiny test models)")
    cluster.add_argument("--ray-app", metavar="NAME",
                         help="send jobs to the Serve application NAME that a Serve config deployed (KubeRay "
                              "RayService, `serve deploy`; import_path inference_server.ray_replica:build_app) "
                              "instead of deploying one; --max-replicas then says how many jobs it is sent at once")
    serve.set_defaults(func=run_serve)

    add_export_parser(subparsers)
    return parser


def _fail(command: str, message: str, code: int = 2) -> int:
    print(f"strata {command}: error: {message}", file=sys.stderr)
    return code


# ------------------------------------------------------------------ decompose


def run_decompose(args: argparse.Namespace) -> int:
    from .backends import choose_backend, create_backend
    from .backends.base import CancelToken
    from .errors import JobCanceled, ModelUnavailable, OutOfMemory
    from .image_input import load_image
    from .layers import MANIFEST_NAME, link_child
    from .params import DecomposeParams
    from .refine import decompose_refined

    if (args.output / MANIFEST_NAME).exists() and not args.force:
        return _fail("decompose", f"{args.output} already holds a decomposition; choose another folder or pass --force")
    if args.output.exists() and not args.output.is_dir():
        return _fail("decompose", f"{args.output} exists and is not a folder")
    values = {"layers": args.layers, "backend": args.backend}
    if args.depth:
        values["depth"] = True
    for name in ("num_inference_steps", "resolution", "seed", "prompt", "preset"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    cancel = CancelToken()
    bar = None
    try:
        params = DecomposeParams.from_dict(values)
        source, parent = args.image, None
        if args.layer is not None:
            source, parent = _parent_layer(args.image, args.layer)
        image, notes = load_image(source, max_pixels=args.max_pixels)
        options = _backend_options(args)
        choice = choose_backend(args.backend, options.get("model_id"), options.get("gpus"), log_fallback=False)
        backend = create_backend(choice.name, **options)
        if params.depth:  # a missing depth model fails now, not after the decomposition's work
            from .depth import get_estimator

            get_estimator()
        bar = _ProgressBar(disable=args.quiet)
        stack = decompose_refined(backend, image, params, bar.update, cancel)
        stack.notes = notes + choice.notes() + list(stack.notes)
        stack.parent = parent
        depth_maps, extra_manifest = None, None
        if params.depth:
            from .depth import estimate_layer_depths

            depth_maps, depth_entry = estimate_layer_depths(stack.composite(), [layer.rgba for layer in stack.layers],
                                                            bar.update)
            extra_manifest = {"depth": depth_entry}
        try:
            if depth_maps is not None:
                from .depth import write_depth_maps

                write_depth_maps(args.output, depth_maps)
            stack.save(args.output, extra_manifest=extra_manifest)
            if parent is not None:
                link_child(args.image, args.layer, str(args.output.resolve()))
        except OSError as exc:  # disk full, read-only, a file in the way
            return _fail("decompose", f"cannot write {args.output}: {exc.strerror or exc}; choose a folder you can "
                                      f"write to")
    except KeyboardInterrupt:
        cancel.cancel()
        return _fail("decompose", "interrupted; nothing was written", 130)
    except JobCanceled:
        return _fail("decompose", "canceled; nothing was written", 130)
    except (OutOfMemory, ModelUnavailable) as exc:
        return _fail("decompose", str(exc), 1)
    except StrataError as exc:
        return _fail("decompose", str(exc))
    finally:
        if bar is not None:
            bar.close()
    return _report(stack, f"({stack.width_px}×{stack.height_px} px, backend {stack.backend}) to {args.output}")


def _report(stack, where: str, what: str = "layer") -> int:
    """The notes on stderr, then one line saying what was written."""
    for note in stack.notes:
        print(f"note: {note}", file=sys.stderr)
    count = len(stack.layers)
    print(f"wrote {count} {what}{'' if count == 1 else 's'} {where}")
    return 0


def run_refine(args: argparse.Namespace) -> int:
    import numpy as np

    from .backends.base import CancelToken
    from .errors import JobCanceled
    from .image_input import load_image
    from .layers import MANIFEST_NAME, Layer, LayerStack, load_layer_files
    from .refine import refine_layers

    if not args.layers_dir.is_dir():
        return _fail("refine", f"{args.layers_dir} is not a folder of layers")
    if (args.output / MANIFEST_NAME).exists() and not args.force:
        return _fail("refine", f"{args.output} already holds a decomposition; choose another folder or pass --force")
    if args.output.exists() and not args.output.is_dir():
        return _fail("refine", f"{args.output} exists and is not a folder")
    cancel = CancelToken()
    bar = None
    try:
        try:
            layers, names, manifest = load_layer_files(args.layers_dir)
        except FileNotFoundError as exc:
            return _fail("refine", str(exc))
        except ValueError as exc:
            return _fail("refine", f"{exc}; every layer must be a PNG (or another image file) with alpha")
        image, notes = load_image(args.image, max_pixels=args.max_pixels)
        bar = _ProgressBar(disable=args.quiet)
        result = refine_layers(layers, np.asarray(image, dtype=np.uint8), names, auto=args.auto,
                               progress=bar.update, cancel=cancel)
        manifest = manifest or {}
        stack = LayerStack([Layer(rgba, name) for rgba, name in zip(result.layers, result.names, strict=False)],
                           backend=manifest.get("backend", ""), params=manifest.get("params", {}),
                           seed=manifest.get("seed"), timings_s=result.timings_s,
                           notes=list(manifest.get("notes", [])) + notes + result.notes,
                           parent=manifest.get("parent"))
        try:
            stack.save(args.output, extra_manifest={"refined_from": str(args.layers_dir.resolve()),
                                                    "original": str(args.image.resolve())})
        except OSError as exc:
            return _fail("refine", f"cannot write {args.output}: {exc.strerror or exc}; choose a folder you can "
                                   f"write to")
    except (KeyboardInterrupt, JobCanceled):
        cancel.cancel()
        return _fail("refine", "interrupted; nothing was written", 130)
    except StrataError as exc:
        return _fail("refine", str(exc))
    finally:
        if bar is not None:
            bar.close()
    return _report(stack, f"({stack.width_px}×{stack.height_px} px) to {args.output}", what="refined layer")


def _parent_layer(folder: Path, layer: int) -> tuple[Path, dict]:
    """The layer file to decompose again, and the child's ``parent`` entry; InvalidInput says what is wrong."""
    manifest = _read_manifest(folder)
    entries = manifest.get("layers") or []
    if not 0 <= layer < len(entries):
        raise InvalidInput(f"--layer {layer} is out of range: {folder} has layers 0–{len(entries) - 1}")
    if entries[layer].get("bbox_px") is None:
        raise InvalidInput(f"layer {layer} of {folder} is empty (fully transparent); nothing to decompose")
    return folder / entries[layer]["file"], {"folder": str(folder.resolve()), "layer": layer}


def _read_manifest(folder: Path) -> dict:
    from .layers import MANIFEST_NAME, read_manifest

    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise InvalidInput(f"{folder} is not a decomposition folder (no {MANIFEST_NAME}); --layer needs one")
    try:
        return read_manifest(folder)
    except ValueError as exc:
        raise InvalidInput(f"{path} is not valid JSON ({exc})") from None


class _ProgressBar:
    """tqdm bar that follows the backend's (stage, step, total) reports, one bar per stage; when stderr is not a
    terminal (piped, logged), one plain line per stage instead of bars redrawn with carriage returns."""

    def __init__(self, disable: bool, stream=None) -> None:
        self.disable = disable
        self.stream = stream or sys.stderr
        self.bar: tqdm | None = None
        self.stage: str | None = None
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, stage: str, step: int, total: int) -> None:
        if self.disable:
            return
        if not self.interactive:
            if stage != self.stage:
                self.stage = stage
                print(f"strata: {stage}" + (f" ({total} steps)" if total > 1 else ""), file=self.stream, flush=True)
            return
        from tqdm import tqdm

        if stage != self.stage or self.bar is None or self.bar.total != total:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, unit="step", leave=True, file=self.stream)
        self.bar.n = step
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ------------------------------------------------------------------ serve


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import Settings, create_app

    token = os.environ.get(TOKEN_ENV, "")
    if not _is_loopback(args.host):
        if not args.allow_remote:
            return _fail("serve", f"refusing to bind {args.host}: the server listens on 127.0.0.1 only unless you pass "
                                  f"--allow-remote (and set {TOKEN_ENV})")
        if not token:
            return _fail("serve", f"--allow-remote needs a token you chose: set {TOKEN_ENV} in the environment")
    if token and len(token) < 16:
        return _fail("serve", f"{TOKEN_ENV} is {len(token)} characters; use at least 16 (e.g. from `python -c "
                              f"'import secrets; print(secrets.token_urlsafe(32))'`)")
    if not token:
        token = secrets.token_urlsafe(32)
        print(f"strata serve: no {TOKEN_ENV} set; generated token: {token}", file=sys.stderr, flush=True)
    if not 0 <= args.port <= 65535:
        return _fail("serve", f"port must be 0..65535, got {args.port}")
    if args.max_queue < 1:
        return _fail("serve", f"--max-queue must be at least 1, got {args.max_queue}")
    ray_settings, problem = _ray_settings(args)
    if problem:
        return _fail("serve", problem)
    try:  # here, not in the app's startup, so a bad folder is one line of error instead of a traceback
        (args.data_dir / "jobs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail("serve", f"cannot use --data-dir {args.data_dir}: {exc.strerror or exc}; pick a folder you can "
                              f"write to")

    # Compiled kernels outlive the process (inductor's caches): a restarted server skips recompiling them.
    os.environ.setdefault("STRATA_COMPILE_CACHE_DIR", str((args.data_dir / "compile-cache").resolve()))
    try:
        backend_options = _backend_options(args)
    except InvalidInput as exc:
        return _fail("serve", str(exc))
    settings = Settings(
        data_dir=args.data_dir, token=token, backend=args.backend, backend_options=backend_options,
        preset=args.preset, max_queue=args.max_queue, max_pixels=args.max_pixels,
        max_upload_bytes=int(args.max_upload_mib * 2**20), allow_remote=args.allow_remote,
        cancel_grace_s=args.cancel_grace_s, ray=ray_settings,
    )
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if os.name != "nt":  # on Windows SO_REUSEADDR would let us take a port another server is listening on
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        return _fail("serve", f"cannot bind {args.host}:{args.port}: {exc.strerror or exc}")
    port = sock.getsockname()[1]
    host_for_url = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    url = f"http://{host_for_url}:{port}"

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if not self.should_exit:
                print(json.dumps({"event": "listening", "url": url, "pid": os.getpid()}), flush=True)

    if ray_settings is not None:
        from .ray_runner import connect

        try:
            connect(ray_settings)
        except Exception as exc:  # an unreachable address, a version mismatch with the cluster
            sock.close()
            return _fail("serve", f"cannot start or join Ray at {args.ray}: {type(exc).__name__}: {exc}")
    app = create_app(settings)
    # loop and http pinned: ray[serve] brings uvloop and httptools, which uvicorn would otherwise pick up and so
    # change how the server parses requests depending on which extras happen to be installed.
    config = uvicorn.Config(app, log_level=args.log_level, access_log=args.log_level in ("info", "debug"),
                            timeout_graceful_shutdown=5, loop="asyncio", http="h11")
    AnnouncingServer(config).run(sockets=[sock])
    return 0


def _ray_settings(args: argparse.Namespace):
    """``(RaySettings | None, problem | None)`` from the --ray options."""
    ray_only = {"--min-replicas": args.min_replicas, "--max-replicas": args.max_replicas,
                "--gpus-per-replica": args.gpus_per_replica, "--ray-app": args.ray_app}
    if args.ray is None:
        given = [name for name, value in ray_only.items() if value is not None]
        return None, (f"{', '.join(given)} only apply with --ray" if given else None)
    from .ray_runner import APP_NAME, RaySettings, ray_missing_message

    address = None if args.ray == "local" else args.ray
    missing = ray_missing_message(address)
    if missing:
        return None, missing
    if args.ray_app is not None:
        if args.ray == "local":
            return None, "--ray-app needs the ADDRESS of the cluster the application runs on (e.g. --ray auto)"
        if args.min_replicas is not None or args.gpus_per_replica is not None:
            return None, ("--min-replicas and --gpus-per-replica come from the Serve config of the application "
                          f"{args.ray_app!r}, not from strata serve")
    min_replicas = 1 if args.min_replicas is None else args.min_replicas
    max_replicas = args.max_replicas if args.max_replicas is not None else max(min_replicas, 1)
    if min_replicas < 0 or max_replicas < 1 or min_replicas > max_replicas:
        return None, (f"need 0 <= --min-replicas <= --max-replicas and --max-replicas >= 1, got {min_replicas} and "
                      f"{max_replicas}")
    gpus = 1.0 if args.gpus_per_replica is None else args.gpus_per_replica
    if gpus < 0:
        return None, f"--gpus-per-replica must be 0 or more, got {gpus}"
    return RaySettings(address=address, min_replicas=min_replicas, max_replicas=max_replicas, gpus_per_replica=gpus,
                       app_name=args.ray_app or APP_NAME, attach=args.ray_app is not None), None


# ------------------------------------------------------------------ entry point


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InvalidInput as exc:
        return _fail(args.command, str(exc))


if __name__ == "__main__":
    sys.exit(main())
