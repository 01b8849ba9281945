# SPDX-License-Identifier: GPL-3.0-or-later
"""The running decomposition's cancel token, per thread.

The long stages call ``checkpoint()`` between their sub-steps (every few hundred ms of work on a 12 MP image), so a
cancel lands inside the stage, not at the next one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..base import CancelToken

_running = threading.local()


@contextmanager
def cancel_scope(token: CancelToken) -> Iterator[None]:
    """Make ``token`` this thread's running token for the block (nested scopes restore the outer one)."""
    outer, _running.cancel = getattr(_running, "cancel", None), token
    try:
        yield
    finally:
        _running.cancel = outer


def running_token() -> CancelToken | None:
    """This thread's running token (None outside a decomposition): for work handed to other threads."""
    return getattr(_running, "cancel", None)


def checkpoint() -> None:
    """Stop here (JobCanceled) if this thread's decomposition was canceled."""
    token = getattr(_running, "cancel", None)
    if token is not None:
        token.raise_if_canceled()
