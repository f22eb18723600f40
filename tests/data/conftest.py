"""Fixtures for the data tests: the real data root, and an HTTP server on 127.0.0.1."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """The data root with the real data sets (``$SHIFTPOOL_DATA``), or skip."""
    root = os.environ.get("SHIFTPOOL_DATA", "")
    if not root or not (Path(root) / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data not found under SHIFTPOOL_DATA={root!r} (set it to shared/data)")
    return Path(root)


@dataclass
class FileServer:
    """A local HTTP server: ``files`` by URL path, Range support, scripted failures."""

    base_url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent, next GET only
    ignore_range: bool = False
    delay: float = 0.0  # seconds before each response
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)

    def url(self, path: str) -> str:
        return self.base_url + path


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            time.sleep(server.delay)
            range_header = self.headers.get("Range")
            server.requests.append((self.path, range_header))
            body = server.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if range_header and not server.ignore_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            cut = server.cut_after.pop(self.path, None)
            self.wfile.write(payload if cut is None else payload[:cut])
            self.wfile.flush()

    return Handler


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    """Serve in-memory files from 127.0.0.1 on a free port for the test's duration."""
    state = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
