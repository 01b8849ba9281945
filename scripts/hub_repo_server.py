# SPDX-License-Identifier: GPL-3.0-or-later
"""A Hub-like HTTP server on 127.0.0.1 serving one local folder as a model repository (test data, not product code).

    python scripts/hub_repo_server.py FOLDER OWNER/NAME     # then HF_ENDPOINT=<printed url> ... Download Model

It answers what huggingface_hub asks for a download: ``GET /api/models/<repo>/revision/<rev>`` (model_info with
file sizes and sha256), ``HEAD``/``GET /<repo>/resolve/<rev>/<file>`` with ``X-Repo-Commit``, ``ETag`` and
``Content-Length``, and ``Range`` requests (206) for resumed downloads. ``bytes_per_s`` slows the bodies so a test
can kill a download mid-file; ``requests`` records (method, path, range start) for assertions.

    with HubRepoServer(folder, "strata-tests/tiny-qwen-layered", bytes_per_s=2e6) as hub:
        env["HF_ENDPOINT"] = hub.url
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CHUNK_BYTES = 16 * 1024


class HubRepoServer:
    def __init__(self, folder, repo_id: str, bytes_per_s: float | None = None) -> None:
        self.folder = Path(folder)
        self.repo_id = repo_id
        self.bytes_per_s = bytes_per_s
        self.requests: list[tuple[str, str, int]] = []
        self.files = {}
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            self.files[path.relative_to(self.folder).as_posix()] = (len(data), hashlib.sha256(data).hexdigest())
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HubRepoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def model_info(self) -> dict:
        siblings = [{"rfilename": name, "size": size, "blobId": sha[:40],
                     "lfs": {"size": size, "sha256": sha, "pointerSize": 130}}
                    for name, (size, sha) in self.files.items()]
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": COMMIT, "private": False, "siblings": siblings}

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _route(self):
                path = urllib.parse.urlparse(self.path).path
                info = re.fullmatch(rf"/api/models/{re.escape(hub.repo_id)}(/revision/[^/]+)?", path)
                if info:
                    return "info", None
                resolve = re.fullmatch(rf"/{re.escape(hub.repo_id)}/resolve/[^/]+/(.+)", path)
                if resolve:
                    return "file", urllib.parse.unquote(resolve.group(1))
                return None, None

            def _not_found(self):
                body = b'{"error": "Repository Not Found"}'
                self.send_response(404)
                self.send_header("X-Error-Code", "RepoNotFound")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _file_headers(self, name, start, status):
                size, sha = hub.files[name]
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{sha}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.end_headers()

            def do_HEAD(self):
                kind, name = self._route()
                hub.requests.append(("HEAD", self.path, 0))
                if kind != "file" or name not in hub.files:
                    return self._not_found()
                self._file_headers(name, 0, 200)

            def do_GET(self):
                kind, name = self._route()
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "") or "")
                start = int(match.group(1)) if match else 0
                hub.requests.append(("GET", self.path, start))
                if kind == "info":
                    body = json.dumps(hub.model_info()).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if kind != "file" or name not in hub.files:
                    return self._not_found()
                self._file_headers(name, start, 206 if start else 200)
                with open(hub.folder / name, "rb") as handle:
                    handle.seek(start)
                    try:
                        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
                            self.wfile.write(block)
                            if hub.bytes_per_s:
                                time.sleep(len(block) / hub.bytes_per_s)
                    except (BrokenPipeError, ConnectionResetError):
                        pass

        return Handler


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="serve FOLDER as the Hub repository OWNER/NAME on 127.0.0.1")
    parser.add_argument("folder")
    parser.add_argument("repo_id")
    parser.add_argument("--bytes-per-s", type=float, help="slow the downloads down (to try cancel and resume)")
    args = parser.parse_args(argv)
    with HubRepoServer(args.folder, args.repo_id, args.bytes_per_s) as hub:
        print(f"HF_ENDPOINT={hub.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
