# SPDX-License-Identifier: GPL-3.0-or-later
"""``python -m inference_server ...`` is the ``strata`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
