# SPDX-License-Identifier: GPL-3.0-or-later
"""Errors that teach: each one says what was wrong and what to do instead.

The HTTP layer maps them to status codes through ``http_status``; the CLI prints ``str(e)``.
"""


class StrataError(Exception):
    """Base class of every error this package raises on purpose."""

    http_status = 500


class InvalidInput(StrataError):
    """The request itself is wrong (bad image, bad parameter): the user can fix it."""

    http_status = 400


class ImageTooLarge(InvalidInput):
    http_status = 413


class NotFound(StrataError):
    http_status = 404


class QueueFull(StrataError):
    http_status = 429


class Busy(StrataError):
    http_status = 409


class JobCanceled(StrataError):
    """Raised inside a backend when the job's cancel token is set; not a failure."""

    http_status = 409


class ModelUnavailable(StrataError):
    """Weights missing, wrong folder, or a dependency (torch, diffusers) not installed."""

    http_status = 503


class OutOfMemory(StrataError):
    """The accelerator ran out of memory; the message suggests a lighter preset."""

    http_status = 507


class StorageFailed(StrataError):
    """The data folder cannot be written (disk full, removed, read-only); the message names the folder."""

    http_status = 507
