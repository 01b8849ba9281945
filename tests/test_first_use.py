# SPDX-License-Identifier: GPL-3.0-or-later
"""What a new user hit on a fresh clone (issue 16): the status of a CPU job says what ran, output files follow the
umask, piped progress is one line per stage, ``--help`` shows the defaults."""

import os
import stat
import subprocess
import sys
from pathlib import Path

from conftest import sample_png

REPO = Path(__file__).resolve().parents[1]
QWEN_ONLY = ("preset", "offload", "num_inference_steps", "true_cfg_scale", "resolution", "negative_prompt")


def test_cpu_job_reports_the_backend_that_ran(start_server):
    server = start_server(args=("--backend", "auto"))  # no CUDA here: auto resolves to the CPU decomposer
    job_id = server.submit(sample_png(), layers=2)
    record = server.wait(job_id)
    assert record["status"] == "succeeded"
    assert record["params"]["backend"] == "cpu"
    assert not set(QWEN_ONLY) & set(record["params"]), record["params"]
    assert record["params"]["layers"] == 2
    manifest = server.get(f"/v1/jobs/{job_id}/manifest").json()
    assert manifest["backend"] == "cpu" and manifest["params"]["backend"] == "cpu"
    assert not set(QWEN_ONLY) & set(manifest["params"])


def _decompose(tmp_path, umask):
    image = tmp_path / "poster.png"
    image.write_bytes(sample_png())
    out = tmp_path / f"layers-{umask:o}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    result = subprocess.run([sys.executable, "-m", "inference_server", "decompose", str(image), "-n", "2", "-o",
                             str(out), "--backend", "cpu"], capture_output=True, text=True, env=env, timeout=300,
                            preexec_fn=lambda: os.umask(umask))
    assert result.returncode == 0, result.stderr
    return out, result


def test_outputs_follow_the_umask_and_piped_progress_is_one_line_per_stage(tmp_path):
    out, result = _decompose(tmp_path, 0o022)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in out.iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes  # as `touch` would make them, not 0600
    out, _ = _decompose(tmp_path, 0o007)
    assert {stat.S_IMODE(path.stat().st_mode) for path in out.iterdir()} == {0o660}

    # stderr is a pipe here: plain lines, one per stage, no bars, no carriage returns, no rates
    lines = [line for line in result.stderr.splitlines() if line.startswith("strata: ")]
    stages = [line.split(": ", 1)[1].split(" (")[0] for line in lines]
    assert len(stages) >= 2 and len(stages) == len(set(stages)), result.stderr
    assert "\r" not in result.stderr and "step/s" not in result.stderr and "it/s" not in result.stderr


def test_help_shows_the_defaults():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    serve = subprocess.run([sys.executable, "-m", "inference_server", "serve", "--help"], capture_output=True,
                           text=True, env=env, timeout=60).stdout
    flat = " ".join(serve.split())
    for default in ("default 8765", "default 30 s", "default warning", "default 127.0.0.1", "default 8)"):
        assert default in flat, default
    decompose = subprocess.run([sys.executable, "-m", "inference_server", "decompose", "--help"], capture_output=True,
                               text=True, env=env, timeout=60).stdout
    assert "default 4" in decompose and "default exact" in " ".join(decompose.split())
