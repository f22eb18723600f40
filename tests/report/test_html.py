"""The self-contained HTML report: its text, and the page as a real headless browser shows it.

The browser tests drive Debian's chromium (or ``$SHIFTPOOL_BROWSER``) over the DevTools protocol
on a pipe (``--remote-debugging-pipe``: JSON messages ending in NUL on file descriptors 3 and 4),
so they need no Python package beyond the standard library. Without a browser they skip, saying
how to get one; with ``SHIFTPOOL_REQUIRE_BROWSER=1`` (set by ``.ci/run``) they fail instead.

:func:`open_in_browser` is usable from other tests (pytest puts ``tests/`` on the path):
``from report.test_html import open_in_browser``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shiftpool.core.errors import InputError, MissingFileError
from shiftpool.report.html import (
    CONTENT_SECURITY_POLICY,
    Code,
    Figure,
    Paragraph,
    Section,
    Table,
    html_report,
    html_report_file,
    write_html_report,
)

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--remote-debugging-pipe")
TIMEOUT_S = 60.0


def png_bytes(width: int = 3, height: int = 2) -> bytes:
    """A valid RGB PNG (a colour gradient), written with zlib alone."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((40 * x % 256, 80 * y % 256, 160)) for x in range(width))
        for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
       b'<rect width="40" height="20" fill="teal"/></svg>')


# -- the page's text ---------------------------------------------------------------------------


def test_text_is_escaped_and_markdown_ish() -> None:
    page = html_report("A <b>title</b>", [Section("S & T", (
        Paragraph("**bold** and *it* and `x<y` and <script>alert(1)</script>\n\n- one\n- `two`"),
        "plain text",
        Code("shiftpool correlate runs/*\n  <tag>"),
    ))], subtitle="data *mnist*")
    body = page.split("<body>")[1]
    assert "<title>A &lt;b&gt;title&lt;/b&gt;</title>" in page
    assert "<h2>S &amp; T</h2>" in body
    assert "<strong>bold</strong> and <em>it</em> and <code>x&lt;y</code>" in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script" not in body
    assert "<ul><li>one</li><li><code>two</code></li></ul>" in body
    assert "<p>plain text</p>" in body
    assert "<pre><code>shiftpool correlate runs/*\n  &lt;tag&gt;</code></pre>" in body
    assert '<p class="subtitle">data <em>mnist</em></p>' in body
    assert CONTENT_SECURITY_POLICY in page


def test_tables_from_rows_and_from_markdown() -> None:
    rows = [{"method": "max", "acc": {"value": 0.9, "low": 0.88, "high": 0.92}, "n": 100},
            {"method": "a|b", "time": 1.25}]
    page = html_report("T", [Section("t", [Table(rows, caption="**acc**",
                                                 column_digits={"time": 1})])])
    assert "<caption><strong>acc</strong></caption>" in page
    assert ('<th scope="col">method</th><th scope="col">acc</th><th scope="col">n</th>'
            '<th scope="col">time</th>') in page
    assert '<td class="num">0.9000 [0.8800, 0.9200]</td>' in page
    assert '<td>a|b</td><td></td><td></td><td class="num">1.2</td>' in page
    table = Table.from_markdown("| m | acc |\n|:--|--:|\n| a\\|b | 0.5 |\n| c | 1 |")
    assert table.rows == ({"m": "a|b", "acc": "0.5"}, {"m": "c", "acc": "1"})


def test_figures_are_embedded_from_files_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "f.png").write_bytes(png_bytes())
    (tmp_path / "f.svg").write_bytes(SVG)
    page = html_report("F", [Section("f", [
        Figure(tmp_path / "f.png", caption="from a file"),
        Figure(str(tmp_path / "f.svg"), alt="svg"),
        Figure(png_bytes(), caption="bytes"),
    ])])
    assert page.count('<img src="data:image/png;base64,') == 2
    assert page.count('<img src="data:image/svg+xml;base64,') == 1
    assert "<figcaption>from a file</figcaption>" in page and 'alt="svg"' in page
    assert str(tmp_path) not in page  # nothing refers to the files


def test_written_atomically_and_as_a_report_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "report.html"
    sections = [Section("x", ["y"])]
    assert write_html_report(target, "R", sections) == target
    assert target.read_text() == html_report_file(target, "R", sections).content
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temporary left


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: html_report("", [Section("a")]), "title"),
        (lambda d: html_report("T", ["not a section"]), "Section"),
        (lambda d: html_report("T", [Section("a", [42])]), "block"),
        (lambda d: Section("a", level=5), "level"),
        (lambda d: Table([]), "at least one row"),
        (lambda d: Table.from_markdown("a | b"), "not a Markdown table"),
        (lambda d: Table.from_markdown("| a | b |\n|---|---|\n| 1 |"), "cells"),
        (lambda d: html_report("T", [Section("a", [Figure(d / "none.png")])]), "none.png"),
        (lambda d: html_report("T", [Section("a", [Figure(b"%PDF-1.4")])]), "pdf"),
        (lambda d: html_report("T", [Section("a", [Figure(b"????")])]), "unknown format"),
        (lambda d: html_report("T", [Section("a", [Figure(3)])]), "path or bytes"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(InputError) as error:
        make(tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_figure_is_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        html_report("T", [Section("a", [Figure(tmp_path / "gone.png")])])


# -- a real browser ----------------------------------------------------------------------------


def find_browser() -> str | None:
    """``$SHIFTPOOL_BROWSER``, else the first chromium or chrome on the PATH."""
    chosen = os.environ.get("SHIFTPOOL_BROWSER")
    if chosen:
        return shutil.which(chosen)  # None when it is not an executable
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def require_browser() -> str:
    """The browser, or skip (fail under ``SHIFTPOOL_REQUIRE_BROWSER=1``) saying how to get one."""
    browser = find_browser()
    if browser is None:
        chosen = os.environ.get("SHIFTPOOL_BROWSER")
        reason = (f"SHIFTPOOL_BROWSER={chosen!r} is not an executable" if chosen else
                  "no headless browser found: install Debian's chromium (apt-get install -y "
                  "chromium) or set SHIFTPOOL_BROWSER to a chromium/chrome executable")
        if os.environ.get("SHIFTPOOL_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return browser


@dataclass
class PageCheck:
    """What the browser saw of a page.

    Attributes:
        title: ``document.title``.
        images: per ``<img>``: ``{"complete", "width"}`` (``naturalWidth``) and ``"src"`` (its
            first 40 characters).
        tables, headings: how many ``<table>`` and ``<h1>``-``<h4>`` elements the page has.
        text: the page's visible text.
        errors: console errors, uncaught exceptions and error log entries (failed loads,
            Content-Security-Policy refusals).
        requests: every URL the page asked for (besides ``data:`` URIs).
    """

    title: str = ""
    images: list[dict[str, Any]] = field(default_factory=list)
    tables: int = 0
    headings: int = 0
    text: str = ""
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


# Started by the Python running the tests: put the two pipe ends on fds 3 and 4 (moved above 9
# first, so neither end can be overwritten by the other), then become the browser.
_EXEC_ON_3_AND_4 = """import fcntl, os, sys
ends = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]
for fd in sys.argv[1:3]:
    os.close(int(fd))
for target, fd in zip((3, 4), ends):
    os.dup2(fd, target)
    os.close(fd)
os.execvp(sys.argv[3], sys.argv[3:])
"""


class _DevTools:
    """A minimal DevTools-protocol client over chromium's ``--remote-debugging-pipe``."""

    def __init__(self, browser: str, profile: str) -> None:
        to_child, self._to_browser = os.pipe()
        self._from_browser, from_child = os.pipe()
        # the browser reads commands on fd 3 and writes replies on fd 4
        self.process = subprocess.Popen(
            [sys.executable, "-c", _EXEC_ON_3_AND_4, str(to_child), str(from_child), browser,
             *BROWSER_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._from_browser, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for message in messages:
                    self._messages.put(json.loads(message))
        self._messages.put(None)

    def _next(self) -> dict[str, Any]:
        message = self._messages.get(timeout=TIMEOUT_S)
        if message is None:
            raise RuntimeError("the browser closed its DevTools pipe")
        return message

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params or {}}
        if session is not None:
            request["sessionId"] = session
        os.write(self._to_browser, json.dumps(request).encode() + b"\0")
        while True:
            message = self._next()
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str) -> None:
        if any(event.get("method") == method for event in self.events):
            return
        while (message := self._next()).get("method") != method:
            self.events.append(message)
        self.events.append(message)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, OSError, queue.Empty):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)


_INSPECT = """JSON.stringify({
  title: document.title,
  images: Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth,
                                                 src: i.src.slice(0, 40)})),
  tables: document.querySelectorAll("table").length,
  headings: document.querySelectorAll("h1, h2, h3, h4").length,
  text: document.body.innerText,
})"""


def open_in_browser(page: Path, browser: str | None = None) -> PageCheck:
    """Load ``page`` (a file) in a fresh headless browser; return what it saw, once loaded."""
    browser = browser or require_browser()
    with tempfile.TemporaryDirectory(prefix="shiftpool-browser-") as profile:
        tools = _DevTools(browser, profile)
        try:
            target = tools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = tools.call("Target.attachToTarget", {"targetId": target,
                                                           "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                tools.call(f"{domain}.enable", session=session)
            tools.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
            tools.wait_for("Page.loadEventFired")
            seen = json.loads(tools.call("Runtime.evaluate", {
                "expression": _INSPECT, "returnByValue": True}, session=session)
                ["result"]["value"])
        finally:
            tools.close()
    check = PageCheck(**seen)
    for event in tools.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            check.errors.append("console: " + " ".join(
                str(arg.get("value", arg.get("description", ""))) for arg in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            check.errors.append("exception: " + details.get("exception", {}).get(
                "description", details.get("text", "")))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            check.errors.append(f"log: {params['entry']['text']}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith("data:"):
                check.requests.append(url)
    return check


def _sample_report(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = [Figure(png_bytes(30, 20), caption="a PNG from bytes")]
    (folder / "box.svg").write_bytes(SVG)
    figures.append(Figure(folder / "box.svg", caption="an SVG file"))
    try:  # a real matplotlib figure where the plots extra is installed
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure as MplFigure

        fig = MplFigure(figsize=(3, 2))
        FigureCanvasAgg(fig)
        fig.subplots().plot([0, 1, 2], [0, 1, 4])
        fig.savefig(folder / "plot.png")
        figures.append(Figure(folder / "plot.png", caption="a matplotlib PNG"))
    except ImportError:
        pass
    sections = [
        Section("Summary", ["Three **figures**, two tables; `n` = 4."]),
        Section("Table", [Table([{"method": "max", "acc": {"value": 0.9, "low": 0.8,
                                                           "high": 0.95}}], caption="rows"),
                          Table.from_markdown("| a | b |\n|---|---|\n| 1 | 2 |")]),
        Section("Figures", figures),
        Section("Command", [Code("shiftpool correlate runs/")], level=3),
    ]
    return write_html_report(folder / "report.html", "Sample <report>", sections,
                             subtitle="mnist5k · simple_cnn")


def test_report_renders_in_a_real_browser(tmp_path: Path) -> None:
    browser = require_browser()
    page = _sample_report(tmp_path / "report")
    moved = tmp_path / "elsewhere" / "report.html"  # self-contained: works away from its files
    moved.parent.mkdir()
    page.rename(moved)
    shutil.rmtree(tmp_path / "report")
    check = open_in_browser(moved, browser)
    assert check.title == "Sample <report>"
    assert check.errors == []
    assert check.requests == [moved.resolve().as_uri()]  # the page itself, nothing else
    assert len(check.images) >= 2
    assert all(image["complete"] and image["width"] > 0 for image in check.images), check.images
    assert check.tables == 2 and check.headings == 5
    assert "a matplotlib PNG" in check.text or len(check.images) == 2


def test_the_browser_check_catches_a_broken_page(tmp_path: Path) -> None:
    """The negative control: a broken image, a script error and an outside request are seen."""
    browser = require_browser()
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>broken</title></head><body>"
        '<img src="data:image/png;base64,AAAA"><img src="http://127.0.0.1:9/x.png">'
        "<script>console.error('shown'); undefined_function();</script></body></html>")
    check = open_in_browser(page, browser)
    assert [image["width"] for image in check.images] == [0, 0]
    assert any("shown" in error for error in check.errors)
    assert any("undefined_function" in error for error in check.errors)
    assert "http://127.0.0.1:9/x.png" in check.requests
