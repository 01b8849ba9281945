# SPDX-License-Identifier: GPL-3.0-or-later
"""Files the add-on writes (layer PNGs, camera-view exports) get the mode any new file gets, not mkstemp's 0600."""

import os
import stat

from blender_addon.core.job_runner import write_bytes_atomic


def test_written_files_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        write_bytes_atomic(tmp_path / "layer_00.png", b"png")
        os.umask(0o002)
        write_bytes_atomic(tmp_path / "view.pptx", b"pptx")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "layer_00.png").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "view.pptx").stat().st_mode) == 0o664
    assert (tmp_path / "view.pptx").read_bytes() == b"pptx"
