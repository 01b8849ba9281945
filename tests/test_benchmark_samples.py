# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmarks package's sample generators: same glyphs on every machine, or a clear error."""

from __future__ import annotations

import pytest

from benchmarks.samples import FontNotFound, font, font_path
from benchmarks.samples_heldout import FONT_FILES


def test_every_sample_font_is_found_by_file_name():
    for file_name in FONT_FILES:
        path = font_path(file_name)
        assert path.name == file_name and path.is_file()
    assert font(40).getbbox("STRATA")[2] > 0


def test_a_missing_font_is_a_clear_error_not_a_fallback_font():
    with pytest.raises(FontNotFound, match="NoSuchFont-Bold.ttf.*fonts-dejavu-core.*matplotlib"):
        font_path("NoSuchFont-Bold.ttf")
