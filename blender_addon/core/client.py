# SPDX-License-Identifier: GPL-3.0-or-later
"""HTTP client of the Strata server, on urllib only (Blender's Python has no ``requests``).

Every call raises ``ServerError`` on failure: its message is the server's ``detail`` (shown to the user as is) or,
when the server cannot be reached, a sentence naming the URL and what to do.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

EXPORT_KINDS = ("pptx", "psd", "zip")
AUTO_LAYERS = "auto"  # the "layers" value that lets the server's decomposer choose the count


def layers_param(auto: bool, count: int) -> int | str:
    """The job's "layers" parameter: ``count``, or AUTO_LAYERS when the decomposer is to choose."""
    return AUTO_LAYERS if auto else int(count)


class ServerError(RuntimeError):
    """A request failed; ``status`` is the HTTP status code, or None when the server could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def encode_multipart(fields: dict[str, str], files: list[tuple[str, str, bytes, str]]) -> tuple[bytes, str]:
    """Encode form fields and files ``(part_name, file_name, data, content_type)`` → (body, content-type header)."""
    boundary = "strata-" + secrets.token_hex(16)
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        chunks.append(value.encode("utf-8") + b"\r\n")
    for name, file_name, data, content_type in files:
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{file_name}"\r\n'
                      f'Content-Type: {content_type}\r\n\r\n'.encode())
        chunks.append(data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _detail(body: bytes, status: int) -> str:
    try:
        detail = json.loads(body.decode("utf-8")).get("detail")
    except (ValueError, AttributeError, UnicodeDecodeError):
        detail = None
    if isinstance(detail, list):  # FastAPI validation errors: a list of {loc, msg}
        detail = "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail)
    if not detail:
        text = body.decode("utf-8", "replace").strip()
        detail = f"HTTP {status}" + (f": {text[:300]}" if text else "")
    return str(detail)


class ServerClient:
    """One Strata server: ``ServerClient("http://127.0.0.1:8765", token)``."""

    def __init__(self, url: str, token: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                 timeout_s: float | None = None) -> bytes:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s or self.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            raise ServerError(_detail(e.read(), e.code), e.code) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise ServerError(f"cannot reach the Strata server at {self.url} ({reason}); start it, or check the "
                              f"URL in the add-on preferences and press Restart server") from None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        data = self._request(method, path, **kwargs)
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError:
            raise ServerError(f"the server at {self.url} answered {path} with something that is not JSON") from None

    def health(self) -> dict:
        return self._json("GET", "/v1/health", timeout_s=min(self.timeout_s, 5.0))

    def submit(self, image_bytes: bytes | None, params: dict, file_name: str = "image.png") -> str:
        """Queue a decomposition → job id. ``image_bytes`` may be None for a recursive job (parent_job in params)."""
        files = []
        if image_bytes is not None:
            content_type = "image/jpeg" if image_bytes[:3] == b"\xff\xd8\xff" else "image/png"
            files.append(("image", file_name, image_bytes, content_type))
        body, content_type = encode_multipart({"params": json.dumps(params)}, files)
        answer = self._json("POST", "/v1/jobs", body=body, content_type=content_type)
        if not isinstance(answer, dict) or "id" not in answer:
            raise ServerError(f"the server at {self.url} accepted the job but sent no job id: {answer!r}")
        return str(answer["id"])

    def status(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}")

    def cancel(self, job_id: str) -> dict:
        return self._json("POST", f"/v1/jobs/{urllib.parse.quote(job_id)}/cancel", body=b"")

    def layer_png(self, job_id: str, index: int) -> bytes:
        return self._request("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}/layers/{int(index)}.png")

    def depth_png(self, job_id: str, index: int) -> bytes:
        """A layer's 16-bit depth map (jobs submitted with ``depth: true``)."""
        return self._request("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}/depth/{int(index)}.png")

    def preview_png(self, job_id: str) -> bytes:
        return self._request("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}/preview.png")

    def manifest(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}/manifest")

    def export_job(self, job_id: str, kind: str) -> bytes:
        if kind not in EXPORT_KINDS:
            raise ValueError(f"export kind must be one of {', '.join(EXPORT_KINDS)}, got {kind!r}")
        return self._request("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}/export.{kind}", timeout_s=120.0)

    def export_layout(self, kind: str, layout: dict, layer_pngs: list[bytes]) -> bytes:
        """Recompose Blender's camera view as PPTX/PSD: ``layout`` per the layout JSON, one PNG per layer."""
        if kind not in ("pptx", "psd"):
            raise ValueError(f"layout export kind must be 'pptx' or 'psd', got {kind!r}")
        if len(layer_pngs) != len(layout.get("layers", [])):
            raise ValueError(f"{len(layer_pngs)} layer images for {len(layout.get('layers', []))} layout entries")
        files = [(f"layer_{i}", f"layer_{i}.png", data, "image/png") for i, data in enumerate(layer_pngs)]
        body, content_type = encode_multipart({"layout": json.dumps(layout)}, files)
        return self._request("POST", f"/v1/exports/{kind}", body=body, content_type=content_type, timeout_s=120.0)
