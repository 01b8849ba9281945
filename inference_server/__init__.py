# SPDX-License-Identifier: GPL-3.0-or-later
"""Strata inference server: decompose an image into RGBA layers (Qwen-Image-Layered on a GPU, or a CPU default)."""

__version__ = "0.1.0"
