"""A small Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (no packages).

    with Browser() as browser:
        page = browser.open(url, width=1400)      # waits for the load and the page's scripts
        page.evaluate("document.title")
        page.screenshot(path)                      # the full page
        page.errors                                # exceptions, console.error, error logs

Chromium reads commands from fd 3 and writes replies and events to fd 4, each
message a JSON object followed by a NUL byte.
"""

from __future__ import annotations

import base64
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
)


class BrowserError(RuntimeError):
    pass


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.errors: list[str] = []

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> Any:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def evaluate(self, expression: str, timeout: float = 60) -> Any:
        reply = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in reply:
            raise BrowserError(f"{expression[:80]!r}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise BrowserError(f"timed out waiting for {expression!r}")

    def screenshot(self, path: Path) -> Path:
        size = self.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        data = self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
            },
        )["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)


class Browser:
    def __init__(self) -> None:
        if CHROMIUM is None:
            raise BrowserError("chromium is not installed (apt-get install chromium)")
        self._profile = tempfile.mkdtemp(prefix="runlab-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def child() -> None:  # runs in the child before exec: fd 3 in, fd 4 out
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                f"--user-data-dir={self._profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child,
            pass_fds=(3, 4),
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._id = 0
        self._replies: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self._pages: dict[str, Page] = {}
        self._events: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # ------------------------------------------------------------ transport
    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                for q in list(self._replies.values()):
                    q.put({"error": {"message": "chromium closed the pipe"}})
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = orjson.loads(raw)
                if "id" in message:
                    q = self._replies.get(message["id"])
                    if q is not None:
                        q.put(message)
                else:
                    self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        page = self._pages.get(message.get("sessionId", ""))
        method, params = message.get("method"), message.get("params", {})
        if page is not None:
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                text = details.get("exception", {}).get("description") or details.get("text")
                page.errors.append(f"exception: {text}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "assert",
            ):
                args = [str(a.get("value", a.get("description"))) for a in params.get("args", [])]
                page.errors.append("console.error: " + " ".join(args))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                page.errors.append("log: " + params["entry"].get("text", ""))
        self._events.put(message)

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 60,
    ) -> Any:
        with self._lock:
            self._id += 1
            ident = self._id
            q: queue.Queue = queue.Queue()
            self._replies[ident] = q
            message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
            if session:
                message["sessionId"] = session
            os.write(self._to_child, orjson.dumps(message) + b"\0")
        try:
            reply = q.get(timeout=timeout)
        except queue.Empty:
            raise BrowserError(f"no reply to {method} in {timeout} s") from None
        finally:
            self._replies.pop(ident, None)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    # ---------------------------------------------------------------- pages
    def open(self, url: str, width: int = 1400, height: int = 1000, timeout: float = 60) -> Page:
        """A new tab at ``width`` x ``height`` CSS pixels showing ``url``, once loaded."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        self._pages[session] = page
        for method in ("Runtime.enable", "Page.enable", "Log.enable"):
            page.send(method)
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        page.send("Page.navigate", {"url": url})
        page.wait_for("document.readyState === 'complete'", timeout=timeout)
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except BrowserError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
