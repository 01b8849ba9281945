# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark and test-data code, apart from the product (``inference_server``): the layered sample generators
(``samples``, ``samples_heldout``) and LayerD's decomposition scores (``metrics``). Used by ``scripts/bench_*.py``,
the demo and the tests; the server never imports it.
"""
