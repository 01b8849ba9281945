# SPDX-License-Identifier: GPL-3.0-or-later
"""Qwen-Image-Layered on several GPUs: CFG-parallel, with Ulysses context parallel inside each branch from 4 GPUs.

Every denoising step runs the transformer twice (true CFG: the prompt, then the negative prompt). With CFG-parallel
the two passes run at the same time on two GPUs: one process per GPU, ``torch.distributed`` between them (NCCL on
CUDA, gloo on CPU), each rank computes one branch and the two noise predictions are exchanged with one
``all_gather`` per step. Every rank then runs the pipeline's own CFG combination (``cfg_normalize`` included) and
scheduler step on the same two tensors, so the latents stay identical on all ranks and the math is the one-GPU
math: each branch is computed exactly as a one-GPU run computes it (batch 1, same kernels).

With 2·U GPUs (U ≥ 2) the ranks form a mesh ``cfg × ring × ulysses = 2 × 1 × U``: ranks 0…U−1 compute the
prompt's branch, U…2U−1 the negative prompt's, and inside each branch diffusers' Ulysses context parallel
(``transformer.enable_parallelism(ContextParallelConfig(ulysses_degree=U, mesh=...))``) splits the sequence across
the U GPUs. ``mode="ulysses"`` uses every GPU for Ulysses and runs the two branches one after the other.

Processes: rank 0 is the server's worker process (it captions, encodes the prompts, decodes and writes the layers);
ranks 1… are follower processes it spawns, each holding a copy of the pipeline on its GPU. For each job rank 0
sends the followers the ready inputs (image, prompt embeddings, seed, settings) over a pipe; every rank then calls
the same pipeline with the same inputs, and a ``CfgParallelForward`` that replaces ``transformer.forward`` routes
the work. Followers stop after the last step (they skip the VAE decode). A cancel is passed on at the next step;
a follower that dies (a crash, out of memory, killed) fails that job with its reason, and the next job starts
fresh processes.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import wait as wait_for
from typing import Any

from ..errors import InvalidInput, JobCanceled, ModelUnavailable, OutOfMemory, StrataError
from .base import no_progress
from .qwen import QwenLayeredBackend, fast_step_cache

logger = logging.getLogger(__name__)

PARALLEL_MODES = ("cfg", "ulysses")
# A follower must report ready (model loaded, preset applied) within this time.
START_TIMEOUT_S = 1800.0
# Collectives wait this long (the first step compiles; ranks may finish compiling seconds apart).
COLLECTIVE_TIMEOUT_S = 1800.0
# After a rank died, the leader gets this long to leave the pipeline call by itself before the worker process
# exits (the job manager then fails the job and starts a fresh worker).
DEAD_RANK_GRACE_S = 30.0
# Messages on the leader ↔ follower pipes.
HELLO, READY, DONE, CANCELED, ERROR, RUN, STOP = "hello", "ready", "done", "canceled", "error", "run", "stop"


def parse_gpus(spec: str | Sequence[int]) -> list[int]:
    """``"0,1"`` → ``[0, 1]``; the error says what is wrong with the list."""
    if isinstance(spec, str):
        parts = [part.strip() for part in spec.split(",") if part.strip()]
        try:
            gpus = [int(part) for part in parts]
        except ValueError:
            raise InvalidInput(f"--gpus takes GPU indices separated by commas, like 0,1; got {spec!r}") from None
    else:
        gpus = [int(gpu) for gpu in spec]
    if any(gpu < 0 for gpu in gpus):
        raise InvalidInput(f"GPU indices start at 0, got {gpus}")
    if len(set(gpus)) != len(gpus):
        raise InvalidInput(f"each GPU may appear once, got {gpus}")
    if not gpus:
        raise InvalidInput("--gpus needs at least one GPU index, like 0,1")
    return gpus


def all_gpus() -> list[int]:
    """``--gpus all``: every GPU torch sees, an even number of them for CFG-parallel (or the one there is)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise InvalidInput("--gpus all needs CUDA GPUs, and torch sees none on this machine")
    return list(range(count - count % 2 if count > 1 else 1))


def cuda_devices(gpus: Sequence[int]) -> list[str]:
    """Device names for ``gpus``, checked against the GPUs this machine has."""
    import torch

    if not torch.cuda.is_available():
        raise InvalidInput(f"--gpus {','.join(map(str, gpus))} needs CUDA GPUs, and torch sees none on this machine")
    count = torch.cuda.device_count()
    missing = [gpu for gpu in gpus if gpu >= count]
    if missing:
        raise InvalidInput(f"GPU {missing[0]} does not exist: this machine has {count} (0–{count - 1})")
    return [f"cuda:{gpu}" for gpu in gpus]


@dataclass(frozen=True)
class ParallelLayout:
    """How the ranks share a step: ``cfg_degree`` branches at once × ``ulysses_degree`` GPUs per branch."""

    world_size: int
    cfg_degree: int
    ulysses_degree: int

    @classmethod
    def plan(cls, world_size: int, mode: str = "cfg") -> ParallelLayout:
        if mode not in PARALLEL_MODES:
            raise InvalidInput(f"parallel mode must be one of {', '.join(PARALLEL_MODES)}, got {mode!r}")
        if world_size < 2:
            raise InvalidInput(f"parallel runs need at least 2 GPUs, got {world_size}")
        if mode == "ulysses":
            return cls(world_size, 1, world_size)
        if world_size % 2:
            raise InvalidInput(
                f"CFG-parallel splits the two guidance passes between two halves of the GPUs, so it needs an even "
                f"number of GPUs; got {world_size}. Use {world_size - 1} GPUs, or mode 'ulysses'"
            )
        return cls(world_size, 2, world_size // 2)

    def branch(self, rank: int) -> int:
        """0: the prompt's branch, 1: the negative prompt's (always 0 without a CFG split)."""
        return rank // self.ulysses_degree if self.cfg_degree == 2 else 0

    def describe(self) -> str:
        return f"{self.world_size} GPUs: CFG × {self.cfg_degree}, Ulysses × {self.ulysses_degree}"


class _StopFollowing(Exception):
    """Follower side: rank 0 stopped the job (canceled) before the next step."""


class _FollowerFinished(Exception):
    """Follower side: the last step is done; rank 0 decodes, the followers skip it."""


class CfgParallelForward:
    """Stands in for ``transformer.forward`` on every rank while a job runs.

    The pipeline calls the transformer twice per step when true CFG runs: first for the prompt (``cond``), then for
    the negative prompt. On the first call each rank computes its own branch (rank of branch 1 swaps in the
    negative prompt's embeddings), the predictions are all-gathered across the CFG pair, and the first call returns
    the prompt's prediction, the second the negative prompt's, without computing again. Before each step rank 0
    broadcasts whether to go on (over the CPU group: no GPU sync), so a cancel reaches the followers.
    """

    def __init__(self, transformer, layout: ParallelLayout, rank: int, cfg_group=None, control_group=None) -> None:
        self.transformer = transformer
        self.inner = transformer.forward
        self.layout = layout
        self.rank = rank
        self.branch = layout.branch(rank)
        self.cfg_group = cfg_group
        self.control_group = control_group
        self.armed = False
        self.true_cfg = False
        self.negative: dict[str, Any] = {}
        self.calls = 0
        self.steps_started = 0
        self.total_steps = 0
        self.computed = 0  # transformer passes this rank ran in the last job
        self._pending = None

    def install(self) -> None:
        self.transformer.forward = self

    def uninstall(self) -> None:
        if self.transformer.__dict__.get("forward") is self:
            self.transformer.forward = self.inner

    def arm(self, total_steps: int, negative_embeds=None, negative_mask=None) -> None:
        self.armed = True
        self.true_cfg = negative_embeds is not None
        self.negative = {"encoder_hidden_states": negative_embeds, "encoder_hidden_states_mask": negative_mask}
        self.calls = self.steps_started = self.computed = 0
        self.total_steps = total_steps
        self._pending = None

    def disarm(self) -> None:
        self.armed = False
        self.negative = {}
        self._pending = None

    @property
    def followers_waiting(self) -> bool:
        """True when the followers will ask rank 0 about one more step (so a stop must be sent)."""
        return self.steps_started < self.total_steps

    def _go_on(self, go: bool = True) -> bool:
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1 if go else 0], dtype=torch.int32)
        dist.broadcast(flag, src=0, group=self.control_group)
        return bool(flag.item())

    def send_stop(self) -> None:
        """Rank 0: tell the followers, waiting before their next step, that the job ends here."""
        self._go_on(False)
        self.steps_started = self.total_steps

    def __call__(self, *args, **kwargs):
        if not self.armed:
            return self.inner(*args, **kwargs)
        first_of_step = not self.true_cfg or self.calls % 2 == 0
        self.calls += 1
        if self._pending is not None:
            prediction, self._pending = self._pending, None
            return (prediction,)
        if first_of_step:
            if not self._go_on():
                raise _StopFollowing("rank 0 stopped the job")
            self.steps_started += 1
        self.computed += 1
        if self.layout.cfg_degree == 1 or not self.true_cfg:
            return self.inner(*args, **kwargs)
        if args:
            raise TypeError("CfgParallelForward expects the pipeline's keyword arguments")
        import torch
        import torch.distributed as dist

        if self.branch == 1:
            with self.transformer.cache_context("uncond"):
                prediction = self.inner(**{**kwargs, **self.negative})[0]
        else:
            prediction = self.inner(**kwargs)[0]
        prediction = prediction.contiguous()
        gathered = [torch.empty_like(prediction) for _ in range(2)]
        dist.all_gather(gathered, prediction, group=self.cfg_group)
        self._pending = gathered[1]
        return (gathered[0],)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _to_bytes(value) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _from_bytes(data: bytes):
    import torch

    return torch.load(io.BytesIO(data), weights_only=False)


def _cpu(value):
    import torch

    return value.detach().to("cpu") if isinstance(value, torch.Tensor) else value


@dataclass
class _Follower:
    rank: int
    device: str
    process: Any
    conn: Any

    def receive(self) -> dict[str, Any] | None:
        """The next message from this rank's pipe (raises EOFError/OSError when the pipe is gone)."""
        return self.conn.recv()


class _JobWatch(threading.Thread):
    """Rank 0, during one job: reads the followers' pipes and notices a follower that dies.

    A death is recorded as the job's failure; on NCCL the process group is aborted so the collective rank 0 may be
    stuck in returns an error, and if rank 0 still does not come back the worker process exits (the job manager
    fails the job and starts a fresh worker for the next one).
    """

    def __init__(self, followers: list[_Follower], on_death: Callable[[], None]) -> None:
        super().__init__(name="strata-parallel-watch", daemon=True)
        self.followers = followers
        self.on_death = on_death
        self.pending = {follower.rank for follower in followers}
        self.results: dict[int, dict] = {}
        self.failure: str | None = None
        self.finished = threading.Event()
        self.job_over = threading.Event()

    def run(self) -> None:
        by_conn = {follower.conn: follower for follower in self.followers}
        by_sentinel = {follower.process.sentinel: follower for follower in self.followers}
        try:
            while self.pending:
                waiting = [f for f in self.followers if f.rank in self.pending]
                ready = wait_for([f.conn for f in waiting] + [f.process.sentinel for f in waiting], timeout=0.5)
                for item in ready:
                    follower: _Follower = by_conn.get(item) or by_sentinel[item]
                    message: dict[str, Any] | None = None
                    if item is follower.conn:
                        try:
                            message = follower.receive()
                        except (EOFError, OSError):
                            message = None
                    if message is not None and message.get("type") in (DONE, CANCELED):
                        self.results[follower.rank] = message
                        self.pending.discard(follower.rank)
                        continue
                    if message is not None and message.get("type") == ERROR:
                        self._died(follower, message.get("error"))
                    elif message is None:
                        self._died(follower, None)
                    return
        finally:
            self.finished.set()

    def _died(self, follower: _Follower, error: str | None) -> None:
        follower.process.join(2.0)
        code = follower.process.exitcode
        how = f"exited with code {code}" if code is not None else "stopped answering"
        self.failure = (f"GPU rank {follower.rank} ({follower.device}) {how} during the job"
                        + (f": {error}" if error else ""))
        logger.error("%s", self.failure)
        self.on_death()
        if not self.job_over.wait(DEAD_RANK_GRACE_S):
            logger.critical("rank 0 is still stuck in a collective %.0f s after %s; the worker exits so the next "
                            "job gets fresh processes", DEAD_RANK_GRACE_S, self.failure)
            os._exit(70)


class ParallelQwenBackend(QwenLayeredBackend):
    """``QwenLayeredBackend`` spread over ``devices`` (rank r on ``devices[r]``); rank 0 is this process.

    mode: "cfg" (the two CFG branches at once, Ulysses inside each branch from 4 devices) or "ulysses" (all
    devices on each branch in turn). pipeline_factory: a picklable ``factory(device) -> pipeline`` that builds the
    pipeline on every rank instead of loading ``model_id`` (the GPU benchmark's random weights).
    """

    name = "qwen"

    def __init__(self, devices: Sequence[str], mode: str = "cfg", pipeline_factory: Callable | None = None,
                 rank: int = 0, init_method: str | None = None, **options) -> None:
        self.devices = list(devices)
        self.layout = ParallelLayout.plan(len(self.devices), mode)
        self.mode = mode
        self.rank = rank
        self.pipeline_factory = pipeline_factory
        self._init_method = init_method
        self._followers: list[_Follower] = []
        self._forward: CfgParallelForward | None = None
        self._cfg_group = None
        self._mesh: Any = None
        options.pop("device", None)
        load_now = options.pop("load_now", False)
        pipeline = options.pop("pipeline", None)
        if pipeline is None and pipeline_factory is not None:
            pipeline = pipeline_factory(self.devices[rank])
        super().__init__(device=self.devices[rank], pipeline=pipeline, **options)
        if load_now:
            self.load()

    @property
    def dist_backend(self) -> str:
        return "cpu:gloo,cuda:nccl" if self.devices[0].startswith("cuda") else "gloo"

    def describe(self) -> dict:
        info = super().describe()
        info["device"] = ",".join(self.devices)
        info["parallel"] = self.layout.describe()
        info["ranks"] = [{"rank": 0, "device": self.devices[0], "pid": os.getpid()}] + [
            {"rank": f.rank, "device": f.device, "pid": f.process.pid} for f in self._followers
        ]
        return info

    # ------------------------------------------------------------------------------------------ process group
    def _check_settings(self, preset: str, offload: str) -> None:
        if offload != "none" or preset == "lowvram":
            raise InvalidInput("multi-GPU runs keep the whole model on every GPU: use offload 'none' and a preset "
                               "other than 'lowvram' (or run on one GPU)")
        if self.layout.ulysses_degree > 1 and preset == "fast" and fast_step_cache() != "none":
            raise InvalidInput("the step cache decides per rank whether to skip blocks, which Ulysses context "
                               "parallel cannot follow; set STRATA_FAST_STEP_CACHE=none or use 2 GPUs (CFG only)")

    def _init_process_group(self) -> None:
        import torch
        import torch.distributed as dist

        if self.devices[self.rank].startswith("cuda"):
            torch.cuda.set_device(torch.device(self.devices[self.rank]))
        dist.init_process_group(self.dist_backend, init_method=self._init_method, rank=self.rank,
                                world_size=self.layout.world_size, timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))
        layout = self.layout
        if layout.cfg_degree == 2 and layout.ulysses_degree == 1:
            self._cfg_group = None  # the world is the pair
            return
        from torch.distributed.device_mesh import init_device_mesh

        device_type = "cuda" if self.devices[0].startswith("cuda") else "cpu"
        self._mesh = init_device_mesh(device_type, (layout.cfg_degree, 1, layout.ulysses_degree),
                                      mesh_dim_names=("cfg", "ring", "ulysses"))
        self._cfg_group = self._mesh.get_group("cfg") if layout.cfg_degree == 2 else None

    def _start_followers(self, preset: str, offload: str) -> None:
        """Rank 0: spawn ranks 1…, join the process group with them. They load their pipelines meanwhile."""
        context = multiprocessing.get_context("spawn")
        self._init_method = f"tcp://127.0.0.1:{_free_port()}"
        spec = dict(devices=self.devices, mode=self.mode, init_method=self._init_method, model_id=self.model_id,
                    preset=preset, offload=offload, compile_backend=self.compile_backend,
                    pipeline_factory=self.pipeline_factory)
        # The server's worker is a daemon process, which multiprocessing forbids to have children (it could not
        # join them at exit). The followers end with it anyway: they die with their parent (PR_SET_PDEATHSIG) and
        # leave when its pipe closes.
        config = vars(multiprocessing.current_process())["_config"]
        was_daemon = config.get("daemon", False)
        config["daemon"] = False
        try:
            for rank in range(1, self.layout.world_size):
                parent_conn, child_conn = context.Pipe(duplex=True)
                process = context.Process(target=follower_main, args=(child_conn, rank, spec),
                                          name=f"strata-rank{rank}", daemon=True)
                process.start()
                child_conn.close()
                self._followers.append(_Follower(rank, self.devices[rank], process, parent_conn))
        finally:
            config["daemon"] = was_daemon
        self._expect(HELLO, timeout_s=300.0, stage="starting")
        self._init_process_group()

    def _expect(self, kind: str, timeout_s: float, stage: str) -> None:
        """Wait for message ``kind`` from every follower; a death or an error stops the group and raises."""
        deadline = time.monotonic() + timeout_s
        waiting = {f.rank: f for f in self._followers}
        while waiting:
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                self._stop_group()
                raise ModelUnavailable(f"GPU ranks {sorted(waiting)} did not finish {stage} within {timeout_s:.0f} s")
            items = [f.conn for f in waiting.values()] + [f.process.sentinel for f in waiting.values()]
            for item in wait_for(items, timeout=min(left_s, 1.0)):
                follower: _Follower = next(f for f in waiting.values() if item in (f.conn, f.process.sentinel))
                message: dict[str, Any] | None = None
                if item is follower.conn:
                    try:
                        message = follower.receive()
                    except (EOFError, OSError):
                        pass
                if message is not None and message.get("type") == kind:
                    waiting.pop(follower.rank)
                    continue
                error = message.get("error") if message else None
                follower.process.join(2.0)
                self._stop_group()
                text = (f"GPU rank {follower.rank} ({follower.device}) failed while {stage}: "
                        f"{error or f'exited with code {follower.process.exitcode}'}")
                if message and message.get("oom"):
                    raise OutOfMemory(text)
                raise ModelUnavailable(text)

    def _stop_group(self) -> None:
        """Stop the followers and leave the process group (rank 0); safe to call when nothing runs."""
        import torch.distributed as dist

        followers, self._followers = self._followers, []
        for follower in followers:
            try:
                follower.conn.send({"type": STOP})
            except (OSError, ValueError):
                pass
        for follower in followers:
            follower.process.join(5.0)
            if follower.process.is_alive():
                follower.process.kill()
                follower.process.join(5.0)
            follower.conn.close()
        if self._forward is not None:
            self._forward.uninstall()
            self._forward = None
        self._cfg_group = self._mesh = None
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - an aborted group may refuse a clean shutdown
                logger.warning("could not destroy the process group cleanly", exc_info=True)

    def close(self) -> None:
        self._stop_group()
        self.unload()

    # ------------------------------------------------------------------------------------------ loading
    def load(self, preset: str | None = None, offload: str | None = None):
        preset = preset or self.preset
        offload = offload or self.offload
        if self.pipe is not None and self._configured == (preset, offload):
            return self.pipe
        self._check_settings(preset, offload)
        if self.rank == 0:
            self._stop_group()  # another preset: the followers restart with it
            self._start_followers(preset, offload)
        try:
            pipe = super().load(preset, offload)
        except BaseException:
            if self.rank == 0:
                self._stop_group()
            raise
        if self.rank == 0:
            self._expect(READY, timeout_s=START_TIMEOUT_S, stage="loading the model")
        return pipe

    def _apply_preset(self, pipe, preset: str, offload: str) -> None:
        super()._apply_preset(pipe, preset, offload)
        self._forward = CfgParallelForward(pipe.transformer, self.layout, self.rank, cfg_group=self._cfg_group)
        self._forward.install()

    def _prepare_parallel(self, pipe) -> bool:
        """Before compiling: Ulysses context parallel inside each branch. Returns whether blocks can compile as
        one graph (the context-parallel hooks exchange sizes on the CPU, which breaks the graph)."""
        if self.layout.ulysses_degree == 1:
            return True
        from diffusers import ContextParallelConfig

        pipe.transformer.enable_parallelism(
            config=ContextParallelConfig(ulysses_degree=self.layout.ulysses_degree, ulysses_anything=True,
                                         mesh=self._mesh))
        return False

    # ------------------------------------------------------------------------------------------ one job
    def decompose(self, image, params, progress=no_progress, cancel=None):
        if self.pipe is not None and (not self._followers or any(not f.process.is_alive() for f in self._followers)):
            # A rank died between jobs: start over (rank 0's model too: its parallel hooks hold the old group).
            logger.warning("a GPU rank stopped between jobs; restarting the GPU processes")
            self._fail_group()
        return super().decompose(image, params, progress, cancel)

    def _run_pipeline(self, pipe, **call):
        """Rank 0: hand the job to the followers, run the pipeline with them, and collect their outcome."""
        negative = call.get("negative_prompt_embeds")
        true_cfg = negative is not None and call.get("true_cfg_scale", 1.0) > 1
        steps = call["num_inference_steps"]
        packet = {key: _cpu(value) for key, value in call.items() if key not in ("callback_on_step_end", "generator")}
        packet["seed"] = call["generator"].initial_seed()
        payload = _to_bytes(packet)
        forward = self._forward
        forward.arm(steps, call.get("negative_prompt_embeds") if true_cfg else None,
                    call.get("negative_prompt_embeds_mask"))
        watch = _JobWatch(list(self._followers), self._abort_collectives)
        for follower in self._followers:
            follower.conn.send({"type": RUN, "payload": payload})
        watch.start()
        try:
            frames = pipe(**call).images[0]
        except JobCanceled:
            if watch.failure is None and forward.followers_waiting:
                forward.send_stop()
            watch.job_over.set()
            watch.finished.wait(60.0)
            if watch.failure:
                self._fail_group()
                raise StrataError(watch.failure + "; the next job restarts the GPU processes") from None
            raise
        except BaseException as error:
            watch.job_over.set()
            watch.finished.wait(5.0)
            failure = watch.failure
            self._fail_group()
            if failure:
                raise StrataError(failure + "; the next job restarts the GPU processes") from error
            raise
        finally:
            forward.disarm()
        watch.job_over.set()
        watch.finished.wait()
        if watch.failure:
            self._fail_group()
            raise StrataError(watch.failure + "; the next job restarts the GPU processes")
        return frames

    def _abort_collectives(self) -> None:
        """From the watch thread: make a collective waiting for a dead rank fail instead of hanging (NCCL)."""
        if not self.devices[0].startswith("cuda"):
            return  # gloo notices the closed connection itself
        try:
            from torch.distributed.distributed_c10d import _abort_process_group

            _abort_process_group()
        except Exception:  # noqa: BLE001 - the grace timer in _JobWatch is the fallback
            logger.warning("could not abort the NCCL process group", exc_info=True)

    def _fail_group(self) -> None:
        """After a failed job the ranks are out of step: stop them and drop this rank's model, so the next job
        loads everything afresh."""
        self._stop_group()
        self.unload()
        if self._given_pipeline is not None and self.pipeline_factory is not None:
            self._given_pipeline = None  # a factory-built pipeline carries the old hooks; build it again
            self._given_pipeline = self.pipeline_factory(self.devices[0])


def follower_main(conn, rank: int, spec: dict) -> None:
    """Entry point of rank ``rank`` (spawned by rank 0): load, then run each job's denoising loop with rank 0."""
    import traceback

    from ..worker import _die_with_parent

    _die_with_parent()
    conn.send({"type": HELLO, "pid": os.getpid()})
    try:
        backend = ParallelQwenBackend(spec["devices"], mode=spec["mode"], pipeline_factory=spec["pipeline_factory"],
                                      rank=rank, init_method=spec["init_method"], model_id=spec["model_id"],
                                      preset=spec["preset"], offload=spec["offload"],
                                      compile_backend=spec["compile_backend"])
        backend._init_process_group()
        backend.load(spec["preset"], spec["offload"])
    except BaseException as error:  # noqa: BLE001 - reported to rank 0, which fails the start with it
        from .qwen import _is_oom

        conn.send({"type": ERROR, "error": f"{type(error).__name__}: {error}", "oom": _is_oom(error)})
        traceback.print_exc()
        os._exit(1)
    conn.send({"type": READY})
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            os._exit(0)  # rank 0 is gone
        if message.get("type") == STOP:
            os._exit(0)
        if message.get("type") != RUN:
            continue
        try:
            status = _follow_job(backend, _from_bytes(message["payload"]))
        except BaseException as error:  # noqa: BLE001 - the ranks are out of step now: report and leave
            from .qwen import _is_oom

            conn.send({"type": ERROR, "error": f"{type(error).__name__}: {error}", "oom": _is_oom(error)})
            traceback.print_exc()
            os._exit(1)
        conn.send({"type": status})


def _follow_job(backend: ParallelQwenBackend, packet: dict) -> str:
    import torch

    pipe = backend.pipe
    device = backend.devices[backend.rank]
    seed = packet.pop("seed")
    call = {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in packet.items()}
    steps = int(call["num_inference_steps"])
    true_cfg = call.get("negative_prompt_embeds") is not None and call.get("true_cfg_scale", 1.0) > 1
    forward = backend._forward
    assert forward is not None, "_apply_preset installs the CFG-parallel forward"
    forward.arm(steps, call.get("negative_prompt_embeds") if true_cfg else None,
                call.get("negative_prompt_embeds_mask"))

    def on_step_end(pipeline, step_index, timestep, callback_kwargs):
        if step_index + 1 == steps:
            raise _FollowerFinished
        return callback_kwargs

    from .qwen import _quiet_pipeline_warnings

    try:
        with _quiet_pipeline_warnings():
            pipe(**call, generator=torch.Generator("cpu").manual_seed(seed), callback_on_step_end=on_step_end)
    except _FollowerFinished:
        return DONE
    except _StopFollowing:
        return CANCELED
    finally:
        forward.disarm()
    return DONE
