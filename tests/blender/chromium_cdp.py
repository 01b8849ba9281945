# SPDX-License-Identifier: GPL-3.0-or-later
"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol on a pipe, for the web-page tests.

``--remote-debugging-pipe``: Chromium reads commands on fd 3 and writes answers and events on fd 4, NUL-separated
JSON; no port, no websocket library. The page session records every network request the page makes
(``Network.requestWillBeSent``), takes screenshots and sends real pointer events (``Input.dispatchMouseEvent``).
WebGL runs on SwiftShader (software), as on a machine without a GPU.
"""

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

import numpy as np


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _fd_above_10(fd):
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Chromium:
    def __init__(self, width_px, height_px):
        binary = chromium_path()
        if binary is None:
            raise FileNotFoundError("no chromium on PATH (apt-get install chromium)")
        self.width_px, self.height_px = width_px, height_px
        self.profile = tempfile.mkdtemp(prefix="strata-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # The child's ends move to fds >= 10 first, so "3<&a 4>&b" below never reads an fd it has just replaced
        # (bash: dash takes single-digit fds only).
        to_chrome_r, from_chrome_w = _fd_above_10(to_chrome_r), _fd_above_10(from_chrome_w)
        args = [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", f"--user-data-dir={self.profile}",
                f"--window-size={width_px},{height_px}", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--mute-audio",
                # Belt and braces: any host name resolves nowhere, so nothing could leave the machine anyway.
                "--host-resolver-rules=MAP * ~NOTFOUND", "about:blank"]
        self.log_path = os.path.join(self.profile, "chromium.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["bash", "-c", f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', *args],
                pass_fds=(to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL, stderr=log)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events = []
        self.requests = []
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.page("Network.enable")
            self.page("Page.enable")
            self.page("Emulation.setDeviceMetricsOverride", width=width_px, height=height_px, deviceScaleFactor=1,
                      mobile=False)
        except Exception:
            self.close()
            raise

    def _read_message(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while b"\0" not in self._buffer:
            left_s = deadline - time.monotonic()
            if left_s <= 0 or self.proc.poll() is not None:
                raise TimeoutError("no answer from chromium")
            if not select.select([self._from_chrome], [], [], min(left_s, 1.0))[0]:
                continue
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                with open(self.log_path, "rb") as log:
                    raise EOFError("chromium closed its pipe: " + log.read()[-1000:].decode(errors="replace"))
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method, session=None, timeout_s=60.0, **params):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message(timeout_s)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def _event(self, message):
        self.events.append(message)
        if message.get("method") == "Network.requestWillBeSent":
            self.requests.append(message["params"]["request"]["url"])

    def page(self, method, **params):
        return self.send(method, session=self.session, **params)

    def evaluate(self, expression):
        result = self.page("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url, ready_expression="document.body && document.body.dataset.ready === '1'", timeout_s=60.0):
        self.page("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(ready_expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not become ready in {timeout_s} s")
            time.sleep(0.1)

    def screenshot(self):
        """The viewport as H×W×3 uint8 (after the next animation frame has been drawn)."""
        from PIL import Image

        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        data = self.page("Page.captureScreenshot", format="png")["data"]
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))

    def move_mouse(self, x_px, y_px):
        self.page("Input.dispatchMouseEvent", type="mouseMoved", x=x_px, y=y_px)

    def close(self):
        try:
            self.send("Browser.close", timeout_s=10)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
