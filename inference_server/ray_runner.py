# SPDX-License-Identifier: GPL-3.0-or-later
"""The server side of ``strata serve --ray``: a JobRunner that runs jobs on a Ray Serve deployment of replicas.

The HTTP job API stays this process's FastAPI app (token, Origin/Host checks, job folders, errors unchanged); only the
work moves: each job is one streaming call through a ``DeploymentHandle`` to a ``ray_replica.StrataReplica``. No Serve
HTTP proxy is started, so Ray opens no HTTP port for jobs. Per job, one thread here reads the stream: "started"
marks the job running, "progress" updates it, "done" brings the files' bytes, which are written into the job folder
atomically (manifest last), as the local worker does.

Up to ``max_replicas`` jobs are handed to Serve at once (Serve queues those beyond the running replicas, which is what
its autoscaler scales on); the rest wait in the JobManager's bounded queue, which answers 429 when full.

A replica (or its node) that dies mid-job: the job runs once more on another replica with a note saying why; a second
death fails it with the reason. Cancel: a flag on the ``JobBoard`` actor, polled by the replica; a job that has not
reached a replica yet is withdrawn from Serve's queue; one that ignores the flag for ``cancel_grace_s`` gets its
replica killed (Serve starts a new one).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .debug_faults import FAULT_ENV
from .job_manager import DispatcherRunner
from .layers import write_bytes_atomic
from .worker import storage_failed_message

if TYPE_CHECKING:
    from .job_manager import ManagerSettings

logger = logging.getLogger(__name__)

APP_NAME = "strata"
# Environment variables a replica needs from the server's environment (a remote node has its own environment;
# STRATA_TOKEN is deliberately not among them: replicas never see the API token).
FORWARDED_ENV = (FAULT_ENV, "STRATA_QWEN_MODEL", "STRATA_DEPTH_MODEL", "HF_HUB_OFFLINE", "HF_HOME")
# Calls routed to a replica that had already died, per job, before the job fails.
UNSTARTED_RETRIES = 3
# How often the dispatcher checks that the idle replicas /v1/health lists still exist (autoscaling removes replicas,
# a node can vanish): one name look-up in Ray's GCS per listed replica.
REPLICA_CHECK_S = 5.0
# Ray settings for the private local instance (each one can still be overridden from the environment). Ray's
# defaults suit a cluster of many nodes; on a small machine an idle instance took 0.08 CPU-seconds a second, 0.056
# with these, CPU that two replicas on two cores need: Serve's controller loops every 0.1 s and Serve's actors export
# metrics every 0.1 s (nobody reads either here: no dashboard, no autoscaling while min = max), and usage statistics
# need a reporting process (and would try to send them).
PRIVATE_INSTANCE_ENV = {
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
    "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000",
    "RAY_USAGE_STATS_ENABLED": "0",
}
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass
class RaySettings:
    address: str | None = None  # None: start a local Ray instance; else a cluster address ("auto", "host:6379")
    min_replicas: int = 1
    max_replicas: int = 1
    gpus_per_replica: float = 1.0  # qwen replicas; 2 for a CFG-parallel backend
    cpus_per_replica: float = 1.0  # cpu replicas
    job_retries: int = 1  # runs after a replica died mid-job
    app_name: str = APP_NAME
    # True: send jobs to an application a Serve config already deployed (KubeRay RayService, `serve deploy`) under
    # app_name, instead of deploying (and at exit deleting) one; its config then sets replicas and resources.
    attach: bool = False


def ray_missing_message(address: str | None) -> str | None:
    """Why ``--ray`` cannot work in this environment, or None. Imports Ray, so it also settles Ray's environment:

    a cluster started with ``ray start --head`` requires its token, but a joining driver's Ray defaults to sending
    none, and Ray reads the mode once, at import: ask for the token (from RAY_AUTH_TOKEN or ~/.ray/auth_token) unless
    RAY_AUTH_MODE says otherwise (``disabled`` for a cluster without tokens).
    """
    if address is not None:
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError as exc:
        return f"--ray needs Ray Serve ({exc}); install it with: pip install 'strata[ray]'"
    return None


def connect(settings: RaySettings) -> None:
    """Start a private local Ray instance or join a cluster (nothing when this process is already connected).

    ``strata serve`` calls this on its main thread before the HTTP server starts: Ray's core installs a native
    SIGTERM handler that aborts the process, and the HTTP server's own handlers, installed afterwards, must win so
    that SIGTERM still means a graceful stop (unfinished jobs recorded, replicas removed).
    """
    import ray

    if ray.is_initialized():
        return
    for name in ("ray", "ray.serve"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if settings.address is None:
        # A private instance for this server: no dashboard, and Serve runs without its HTTP proxy (see
        # _connect_and_deploy). Ray's own gRPC ports cannot be bound to loopback (Ray binds all interfaces); they
        # require Ray's cluster token (RAY_AUTH_MODE=token, the default since Ray 2.5x), kept in ~/.ray.
        # Its processes inherit this environment: see PRIVATE_INSTANCE_ENV.
        for name, value in PRIVATE_INSTANCE_ENV.items():
            os.environ.setdefault(name, value)
        ray.init(address="local", include_dashboard=False, namespace="strata", logging_level=logging.WARNING,
                 configure_logging=False)
    else:
        ray.init(address=settings.address, namespace="strata", logging_level=logging.WARNING,
                 configure_logging=False)


@dataclass
class _Job:
    message: dict[str, Any]
    response: Any = None
    replica: dict[str, Any] | None = None  # {"replica": actor name, "pid": ..., "node_ip": ...} once started
    cancel_at: float | None = None


@dataclass
class _Replica:
    pid: int
    node_ip: str
    job: str | None = None
    jobs_done: int = 0
    peak_rss_mib: float | None = None
    peak_gpu_mib: float | None = None


class RayRunner(DispatcherRunner):
    dispatcher_name = "strata-ray-dispatcher"

    def __init__(self, settings: ManagerSettings) -> None:
        if settings.ray is None:
            raise ValueError("RayRunner needs Settings.ray")
        super().__init__(settings)
        self.ray_settings: RaySettings = settings.ray
        self._jobs: dict[str, _Job] = {}
        self._replicas: dict[str, _Replica] = {}
        # Ray's handles (a serve DeploymentHandle, the JobBoard's ActorHandle), set once deployed.
        self._handle: Any = None
        self._board: Any = None
        # Set when a job ends, so that the dispatcher hands the next one to the freed replica at once.
        self._job_ended = threading.Event()
        self._connected = False
        self.replica_deaths = 0

    # ----------------------------------------------------------------- JobRunner

    def close(self) -> None:
        self._stopping = True
        self._job_ended.set()
        if self._thread is not None:
            self._thread.join(30)
        if not self._connected:
            return
        import ray
        from ray import serve

        # The private local instance simply stops with ray.shutdown() (replicas included, at once); on someone else's
        # cluster the application is deleted, to give its GPUs back, and the rest left running.
        if self.ray_settings.address is not None and not self.ray_settings.attach:
            try:
                serve.delete(self.ray_settings.app_name)
            except Exception as exc:
                logger.warning("could not remove the Ray Serve application: %s", exc)
        ray.shutdown()

    def cancel(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            job.cancel_at = time.monotonic()
            board, response, started = self._board, job.response, job.replica is not None
        if board is not None:
            board.cancel.remote(job_id)
        if response is not None and not started:
            response.cancel()  # still in Serve's queue: withdraw it (the replica also checks the board on start)

    def health(self) -> dict[str, Any]:
        with self._lock:
            running = [job_id for job_id, job in self._jobs.items() if job.replica is not None]
            replicas = [
                {"replica": name, "pid": replica.pid, "node_ip": replica.node_ip, "job": replica.job,
                 "jobs_done": replica.jobs_done, "peak_rss_mib": replica.peak_rss_mib,
                 "peak_gpu_mib": replica.peak_gpu_mib}
                for name, replica in sorted(self._replicas.items())
            ]
            return {
                "runner": "ray",
                "running": running[0] if running else None,
                "running_jobs": running,
                "worker_pid": None,
                "worker_restarts": self.replica_deaths,
                "replicas": replicas,
            }

    # ----------------------------------------------------------------- start-up

    def _run(self) -> None:
        try:
            self._connect_and_deploy()
        except Exception as exc:
            where = self.ray_settings.address or "a local Ray instance"
            logger.exception("Ray Serve start-up failed")
            self.manager.runner_unavailable(f"Ray Serve could not start on {where}: {type(exc).__name__}: "
                                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
            return
        next_replica_check = time.monotonic() + REPLICA_CHECK_S
        while not self._stopping:
            self._job_ended.clear()
            self._dispatch()
            self._check_cancel_deadlines()
            if time.monotonic() >= next_replica_check:
                self._forget_vanished_replicas()
                next_replica_check = time.monotonic() + REPLICA_CHECK_S
            # New jobs are polled for, as the local runner polls its worker's pipe; a job's end wakes it at once.
            self._job_ended.wait(0.05)

    def _connect_and_deploy(self) -> None:
        import ray
        from ray import serve

        settings = self.ray_settings
        connect(settings)
        self._connected = True
        from .ray_replica import RAY_NAMESPACE, JobBoard, board_name, replica_deployment

        self._board = ray.remote(num_cpus=0)(JobBoard).options(
            name=board_name(settings.app_name), namespace=RAY_NAMESPACE, get_if_exists=True).remote()
        if settings.attach:
            self._handle = serve.get_app_handle(settings.app_name)
        else:
            serve.start(proxy_location="Disabled")
            backend, actor_options = self._replica_resources(ray.cluster_resources())
            self._check_room_for_a_replica(actor_options, ray.cluster_resources())
            env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
            if env:
                actor_options["runtime_env"] = {"env_vars": env}
            if settings.min_replicas == settings.max_replicas:
                scale: dict[str, Any] = {"num_replicas": settings.max_replicas}
            else:
                scale = {"autoscaling_config": {
                    "min_replicas": settings.min_replicas, "max_replicas": settings.max_replicas,
                    "initial_replicas": max(settings.min_replicas, 1),
                    "target_ongoing_requests": 1, "upscale_delay_s": 3, "downscale_delay_s": 120,
                }}
            deployment = replica_deployment(ray_actor_options=actor_options, **scale)
            app = deployment.bind(self.settings.backend, dict(self.settings.backend_options))
            self._handle = serve.run(app, name=settings.app_name, route_prefix=None)
        describe = self._handle.describe.remote().result(timeout_s=self.settings.ready_timeout_s)
        self.manager.runner_ready(describe)

    def _replica_resources(self, cluster: dict[str, float]) -> tuple[str, dict[str, Any]]:
        """The backend the replicas run and what each one reserves: a GPU (or two) for qwen, a CPU for cpu."""
        backend = self.settings.backend
        if backend == "auto":
            backend = "qwen" if cluster.get("GPU", 0) > 0 else "cpu"
        if backend == "qwen" and self.ray_settings.gpus_per_replica > 0:
            return backend, {"num_cpus": 1, "num_gpus": self.ray_settings.gpus_per_replica}
        return backend, {"num_cpus": self.ray_settings.cpus_per_replica}

    def _check_room_for_a_replica(self, actor_options: dict[str, Any], cluster: dict[str, float]) -> None:
        """A private instance never grows: a replica it cannot place would leave every job queued for ever."""
        gpus = actor_options.get("num_gpus", 0)
        if gpus > cluster.get("GPU", 0):
            message = (f"a {self.settings.backend} replica needs {gpus:g} GPU(s) and the Ray cluster has "
                       f"{cluster.get('GPU', 0):g}; use --backend cpu, or --gpus-per-replica 0 to run qwen on the CPU")
            if self.ray_settings.address is None:
                raise RuntimeError(message)
            logger.warning("%s (waiting for the cluster to add GPU nodes)", message)

    # ----------------------------------------------------------------- jobs

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                if self._stopping or len(self._jobs) >= self.ray_settings.max_replicas:
                    return
                message = self.manager.next_job(mark_running=False)
                if message is None:
                    return
                self._jobs[message["job"]] = _Job(message)
            threading.Thread(target=self._run_job, args=(message,), name=f"strata-ray-job-{message['job'][:8]}",
                             daemon=True).start()

    def _check_cancel_deadlines(self) -> None:
        now = time.monotonic()
        overdue: list[str] = []
        with self._lock:
            for job in self._jobs.values():
                if (job.cancel_at is not None and job.replica is not None
                        and now - job.cancel_at > self.settings.cancel_grace_s):
                    job.cancel_at = None
                    overdue.append(job.replica["replica"])
        for name in overdue:  # a step that never returns: kill the replica; Serve starts a fresh one
            import ray

            try:
                ray.kill(ray.get_actor(name, namespace="serve"))
            except Exception as exc:
                logger.warning("could not kill replica %s: %s", name, exc)

    def _forget_vanished_replicas(self) -> None:
        """Drop from /v1/health the idle replicas that no longer exist: autoscaling removed them, or they died
        between jobs (a death during a job is handled by that job). A replica actor's name is released when it
        ends, so a failed look-up means it is gone."""
        import ray

        with self._lock:
            idle = [name for name, replica in self._replicas.items() if replica.job is None]
        gone = []
        for name in idle:
            try:
                ray.get_actor(name, namespace="serve")
            except ValueError:
                gone.append(name)
            except Exception as exc:  # the GCS not answering: keep the entries, look again later
                logger.debug("could not look up replica %s: %s", name, exc)
        if gone:
            with self._lock:
                for name in gone:
                    replica = self._replicas.get(name)
                    if replica is not None and replica.job is None:
                        del self._replicas[name]

    def _run_job(self, message: dict[str, Any]) -> None:
        import ray.exceptions
        from ray.serve.exceptions import RequestCancelledError

        manager = self.manager
        job_id = message["job"]
        try:
            try:
                image_bytes = Path(message["input"]).read_bytes()
            except OSError as exc:
                manager.job_finished(job_id, "failed", f"could not read the job's input {message['input']} "
                                                       f"({exc.strerror or exc}); submit the job again")
                return
            retries_left, unstarted_left = self.ray_settings.job_retries, UNSTARTED_RETRIES
            while True:
                try:
                    self._stream(message, image_bytes)
                    return
                except RequestCancelledError:
                    manager.job_finished(job_id, "canceled", None)
                    return
                except ray.exceptions.RayActorError as exc:
                    started, reason = self._replica_died(job_id, exc)
                    if self._stopping:
                        return
                    if manager.cancel_requested(job_id):
                        manager.job_lost(job_id, reason)
                        return
                    if not started and unstarted_left > 0:
                        # Routed to a replica that had just died (Serve learns of deaths from such calls): the
                        # backend never saw the job, so this costs no retry.
                        unstarted_left -= 1
                    elif retries_left > 0:
                        retries_left -= 1
                        note = f"{reason}; the job was run again on another replica"
                        manager.job_note(job_id, note)
                        message = dict(message, notes=list(message.get("notes", [])) + [note])
                    else:
                        retried = " (it had been run again once already)" if self.ray_settings.job_retries else ""
                        manager.job_lost(job_id, f"{reason}{retried}; submit it again")
                        return
                    with self._lock:
                        self._jobs[job_id] = _Job(message)
        except Exception as exc:
            if not self._stopping:
                logger.exception("job %s on Ray Serve", job_id)
                manager.job_finished(job_id, "failed", f"Ray Serve could not run the job: {type(exc).__name__}: "
                                                       f"{exc}")
        finally:
            with self._lock:
                self._jobs.pop(job_id, None)
                board = self._board
            self._job_ended.set()
            if board is not None and not self._stopping:
                board.forget.remote(job_id)

    def _stream(self, message: dict[str, Any], image_bytes: bytes) -> None:
        job_id = message["job"]
        if self._handle is None:
            raise RuntimeError("no Ray Serve deployment to send the job to")
        response = self._handle.options(stream=True).run.remote(message, image_bytes)
        with self._lock:
            job = self._jobs[job_id]
            job.response = response
            canceled = job.cancel_at is not None
        if canceled:  # canceled between the dispatch and now
            self.cancel(job_id)
        for event in response:
            if self._stopping:
                return
            kind = event.get("type")
            if kind == "started":
                with self._lock:
                    job.replica = {key: event.get(key) for key in ("replica", "pid", "node_ip")}
                    replica = self._replicas.setdefault(event["replica"], _Replica(event["pid"], event["node_ip"]))
                    replica.job = job_id
                self.manager.job_started(job_id)
            elif kind == "progress":
                self.manager.job_progress(job_id, event["stage"], event["step"], event["total"])
            elif kind == "done":
                self._done(job, event)
                return
        raise RuntimeError("the replica's result stream ended without a result")

    def _done(self, job: _Job, event: dict[str, Any]) -> None:
        manager = self.manager
        job_id = job.message["job"]
        with self._lock:
            replica = self._replicas.get(job.replica["replica"]) if job.replica is not None else None
            if replica is not None:
                replica.job = None
                replica.jobs_done += 1
                replica.peak_rss_mib = event.get("peak_rss_mib")
                replica.peak_gpu_mib = event.get("peak_gpu_mib")
        if event.get("describe"):
            manager.runner_describe(event["describe"])
        if event["status"] != "succeeded":
            manager.job_finished(job_id, event["status"], event.get("error"))
            return
        folder = Path(job.message["folder"])
        try:
            for name, data in event["files"].items():  # manifest.json comes last: its presence means complete
                if not _FILE_NAME.match(name):
                    raise ValueError(f"unexpected file name {name!r} from the replica")
                write_bytes_atomic(folder / name, data)
        except OSError as exc:
            manager.job_finished(job_id, "failed", storage_failed_message(folder, exc))
            return
        manager.job_finished(job_id, "succeeded", None, event.get("layers"), event.get("notes"))

    def _replica_died(self, job_id: str, exc: Exception) -> tuple[bool, str]:
        """Forget the dead replica; whether the job had started on it, and the sentence that says which replica
        died and why."""
        with self._lock:
            self.replica_deaths += 1
            job = self._jobs.get(job_id)
            replica = job.replica if job is not None else None
            if replica is not None:
                self._replicas.pop(replica["replica"], None)
        text = str(exc)
        detail = re.search(r"Worker exit type: (\S+) Worker exit detail: ([^.]*)", text)
        if detail:
            why = f"{detail.group(2).strip()} ({detail.group(1)}; killed, out of memory or crashed)"
        else:
            why = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        if replica is None:
            return False, f"the Ray Serve replica assigned to this job died before starting it: {why}"
        return True, (f"Ray Serve replica {replica['replica']} (pid {replica['pid']} on {replica['node_ip']}) died "
                      f"while running this job: {why}")
