"""A minimal headless-Chromium driver over the Chrome DevTools Protocol (no downloads, no selenium).

Debian's `chromium` is started with `--remote-debugging-port=0`; the port it chose is read from
`DevToolsActivePort` in its profile folder, and the page is driven over a websocket (`websockets`,
already a dependency of Prefect). Console errors, uncaught exceptions and failed loads are
collected while the page runs.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900, timeout_s: float = 60.0) -> None:
        self.binary, self.width, self.height, self.timeout_s = binary, width, height, timeout_s
        self.errors: list[str] = []
        self._seen: set[str] = set()
        self._ids = itertools.count(1)

    def __enter__(self) -> Browser:
        from websockets.sync.client import connect

        self._profile = tempfile.mkdtemp(prefix="voicetone-chromium-")
        self._proc = subprocess.Popen(
            [self.binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
             "--autoplay-policy=no-user-gesture-required", "--allow-file-access-from-files",
             f"--user-data-dir={self._profile}", "--remote-debugging-port=0",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.__exit__(None, None, None)
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            pages = [t for t in json.load(resp) if t.get("type") == "page"]
        self._ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=self.timeout_s)
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(method)
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _event(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params") or {}
        if method == "Runtime.exceptionThrown":
            self.errors.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append("console: " + json.dumps(params.get("args", []))[:500])
        elif method == "Log.entryAdded" and (params.get("entry") or {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")
        self._seen.add(method)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer, collecting events that arrive meanwhile."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout_s
        while True:
            msg = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result") or {}
            self._event(msg)

    def wait_for(self, event: str) -> None:
        """Until `event` has arrived (also if it arrived while a command was answered)."""
        deadline = time.monotonic() + self.timeout_s
        while event not in self._seen:
            self._event(json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic()))))

    def open(self, url: str) -> None:
        self._seen.discard("Page.loadEventFired")
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return (result.get("result") or {}).get("value")

    def screenshot(self, path: Path) -> Path:
        """The visible viewport (width x height) as PNG."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path


# Every <audio>: can the browser play its type, and does it load with a duration? (JS, awaited)
AUDIO_CHECK_JS = """
(async () => {
  const out = [];
  for (const a of document.querySelectorAll('audio')) {
    const src = a.currentSrc || a.src;
    const type = src.startsWith('data:') ? src.slice(5, src.indexOf(';')) : 'audio/wav';
    const can = a.canPlayType(type);
    const ok = await new Promise((resolve) => {
      if (a.readyState >= 1) return resolve(true);
      const t = setTimeout(() => resolve(false), 15000);
      a.addEventListener('loadedmetadata', () => { clearTimeout(t); resolve(true); }, {once: true});
      a.addEventListener('error', () => { clearTimeout(t); resolve(false); }, {once: true});
      a.preload = 'auto'; a.load();
    });
    out.push({src: src.slice(0, 120), can, ok, duration: a.duration, error: a.error ? a.error.code : null});
  }
  return out;
})()
"""
CARD_CELLS_JS = """
Array.from(document.querySelectorAll('[data-card]')).map(e => [e.dataset.card, e.textContent.trim()])
"""
