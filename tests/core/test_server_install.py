# SPDX-License-Identifier: GPL-3.0-or-later
"""Install Server's bpy-free parts that need no package index: choosing a Python, the torch build, the disk check,
and what counts as the installed server. (The whole install runs in tests/blender/test_install_server.py.)"""

import json
import shutil
import sys
from pathlib import Path

import pytest

from blender_addon.core.background_task import TaskError
from blender_addon.core.server_install import (
    InstallOptions,
    ServerInstall,
    check_free_space,
    find_python,
    installed_python,
    remove_unused_envs,
    torch_index_args,
)


def test_a_chosen_python_of_the_wrong_version_is_refused_with_what_to_do():
    pyenv = sorted(Path("/root/.pyenv/versions").glob("3.13*/bin/python3"))  # pyenv's shims may not run
    old = pyenv[0] if pyenv else shutil.which("python3.13")
    if old is None:
        pytest.skip("no Python 3.13 here")
    with pytest.raises(TaskError, match=r"is 3\.13; the server needs Python 3\.10, 3\.11, 3\.12"):
        find_python(str(old))
    with pytest.raises(TaskError, match="cannot run the Python '/nowhere/python'"):
        find_python("/nowhere/python")
    path, version = find_python(sys.executable)
    assert path == sys.executable and version == sys.version_info[:2]


def test_torch_build_per_platform_and_reachable_index():
    assert torch_index_args("cpu", "linux", probe=lambda url: True)[0] == ["--index-url",
                                                                          "https://download.pytorch.org/whl/cpu"]
    args, why = torch_index_args("cpu", "linux", probe=lambda url: False)
    assert args == [] and "does not answer" in why  # a mirror-only network: the configured index
    assert torch_index_args("cuda", "linux")[0] == []  # PyPI's Linux wheels are the CUDA builds
    assert torch_index_args("cuda", "win32")[0] == ["--extra-index-url", "https://download.pytorch.org/whl/cu128"]


def test_full_disk_is_refused_before_anything_is_built(tmp_path):
    with pytest.raises(TaskError, match="not enough free disk space .* free some space"):
        check_free_space(tmp_path, 2**60)
    wheel = tmp_path / "strata-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    task = ServerInstall(InstallOptions(root=tmp_path / "user", wheel=wheel, python=sys.executable,
                                        torch_variant="none", need_free_bytes=2**60)).start()
    snapshot = task.wait(60)
    assert snapshot.status == "failed" and "not enough free disk space" in snapshot.error
    assert list((tmp_path / "user" / "envs").iterdir()) == []  # no venv started
    assert installed_python(tmp_path / "user") == ""


def test_the_pointer_decides_what_is_installed_and_what_is_removed(tmp_path):
    envs = tmp_path / "envs"
    for name in ("env-a", "env-b", "env-c"):
        (envs / name / "bin").mkdir(parents=True)
        (envs / name / "bin" / "python").write_text("")
    assert installed_python(tmp_path) == ""
    (tmp_path / "server-env.json").write_text(json.dumps({"python": str(envs / "env-b" / "bin" / "python"),
                                                          "env": "env-b"}))
    assert installed_python(tmp_path) == str(envs / "env-b" / "bin" / "python")
    # env-c runs a server right now: kept; env-a is a leftover: removed
    assert remove_unused_envs(tmp_path, {str(envs / "env-c" / "bin" / "python")}) == ["env-a"]
    assert sorted(p.name for p in envs.iterdir()) == ["env-b", "env-c"]
    (envs / "env-b" / "bin" / "python").unlink()  # its python gone: nothing usable is installed
    assert installed_python(tmp_path) == ""
