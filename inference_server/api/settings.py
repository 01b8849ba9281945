# SPDX-License-Identifier: GPL-3.0-or-later
"""What a server is started with (``strata serve`` builds one from its flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..image_input import DEFAULT_MAX_PIXELS
from ..job_manager import ManagerSettings

DEFAULT_MAX_UPLOAD_BYTES = 64 * 1024 * 1024


@dataclass
class Settings:
    data_dir: Path
    token: str
    backend: str = "auto"
    backend_options: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    max_queue: int = 8
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    allow_remote: bool = False
    cancel_grace_s: float = 30.0
    ray: Any = None  # ray_runner.RaySettings for strata serve --ray

    def manager_settings(self) -> ManagerSettings:
        return ManagerSettings(
            data_dir=Path(self.data_dir), backend=self.backend, backend_options=dict(self.backend_options),
            preset=self.preset, max_queue=self.max_queue, max_pixels=self.max_pixels,
            cancel_grace_s=self.cancel_grace_s, ray=self.ray,
        )
