# SPDX-License-Identifier: GPL-3.0-or-later
"""Every source file names its licence (GPL-3.0-or-later, as Blender add-ons must be GPL-compatible)."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = "# SPDX-License-Identifier: GPL-3.0-or-later"


def test_every_tracked_source_file_carries_the_spdx_header() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "*.py", "*.sh", ".ci/run"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert listed, "git ls-files found no sources"
    missing = [
        name for name in listed if TAG not in (ROOT / name).read_text(encoding="utf-8").splitlines()[:2]
    ]
    assert missing == [], f"add '{TAG}' as the first line (after a #! line) of: {missing}"
