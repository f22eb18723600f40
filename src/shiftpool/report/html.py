"""One self-contained HTML page per report: headings, paragraphs, tables and figures.

A report is a title and a list of :class:`Section`; a section holds blocks: :class:`Paragraph`
(Markdown-ish inline text), :class:`Table` (from rows, as :mod:`shiftpool.report.tables` writes
them, or from a Markdown table), :class:`Figure` (a PNG, JPEG, GIF, WebP or SVG file, or its
bytes) and :class:`Code` (preformatted text). The page needs nothing else:

- every figure is embedded as a ``data:`` URI (base64), so the file opens offline, can be
  mailed or attached to an issue, and no figure can go missing beside it;
- the style sheet is inline, there is no script, and a ``Content-Security-Policy`` in the page
  forbids loading anything from elsewhere (a browser would refuse even a stray link);
- all text is escaped.

Paragraph text understands a little Markdown: ``**bold**``, ``*italic*``, ```code```; a blank
line starts a new paragraph, and lines that all start with ``- `` make a list.

Example:
    >>> import tempfile, pathlib
    >>> page = pathlib.Path(tempfile.mkdtemp()) / "report.html"
    >>> sections = [Section("Results", (
    ...     Paragraph("Accuracy of each **method**, with `n` test images."),
    ...     Table([{"method": "max", "acc": {"value": 0.9, "low": 0.88, "high": 0.92}}]),
    ... ))]
    >>> write_html_report(page, "Comparison", sections).name
    'report.html'
    >>> "0.9000 [0.8800, 0.9200]" in page.read_text()
    True
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shiftpool.core.errors import InputError, InputTypeError, MissingFileError
from shiftpool.core.io import atomic_write_text
from shiftpool.report.tables import ReportFile, columns, format_value

#: Image formats a :class:`Figure` may hold, with their MIME types.
IMAGE_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "svg": "image/svg+xml",
}
_SUFFIXES = {"jpg": "jpeg", "svgz": None}

#: The page's Content-Security-Policy: nothing may load but the embedded images and style.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
h3, h4 { font-size: 1.1rem; }
p.subtitle { color: #555; margin-top: 0; }
nav ul { padding-left: 1.2rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.3rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.55rem; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9rem; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 0.88rem; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; }
footer { margin-top: 3rem; color: #777; font-size: 0.8rem; }
"""

_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?( \[.*\])?%?$")
_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\*([^*\s][^*]*?)\*")


@dataclass(frozen=True)
class Paragraph:
    """Text with a little Markdown (``**bold**``, ``*italic*``, ```code```, ``- `` lists;
    blank lines separate paragraphs)."""

    text: str


@dataclass(frozen=True)
class Code:
    """Preformatted text (a command, a log excerpt), shown as is."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table with one column per key of the rows (first-seen order).

    Cells are formatted as in :func:`shiftpool.report.tables.markdown_table`: numbers to
    ``digits`` decimals (or ``column_digits[key]``), estimate dicts as ``value [low, high]``,
    ``None`` as an empty cell.

    Example:
        >>> Table.from_markdown("| a | b |\\n|---|---|\\n| 1 | x |").rows
        ({'a': '1', 'b': 'x'},)
    """

    rows: Sequence[Mapping[str, Any]]
    caption: str = ""
    digits: int = 4
    column_digits: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", tuple(dict(row) for row in self.rows))
        if not self.rows:
            raise InputError("shiftpool.report.html: a table needs at least one row")

    @classmethod
    def from_markdown(cls, text: str, caption: str = "") -> Table:
        """The rows of a GitHub-flavoured Markdown table (cells kept as text)."""
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        if len(lines) < 3 or not all(line.startswith("|") for line in lines) or not set(
                lines[1].replace("|", "").replace(":", "").replace(" ", "")) <= {"-"}:
            raise InputError("shiftpool.report.html: not a Markdown table (a header line, a "
                             f"|---| line and rows, each starting with '|'): {text[:60]!r}")
        header = _cells(lines[0])
        rows = []
        for line in lines[2:]:
            cells = _cells(line)
            if len(cells) != len(header):
                raise InputError(f"shiftpool.report.html: a Markdown table row has {len(cells)} "
                                 f"cells, the header {len(header)}: {line!r}")
            rows.append(dict(zip(header, cells, strict=True)))
        return cls(rows, caption)


@dataclass(frozen=True)
class Figure:
    """An image embedded in the page.

    Attributes:
        image: a file (PNG, JPEG, GIF, WebP or SVG) or the bytes of one.
        caption: shown under the image.
        alt: the text alternative (default: the caption).
        format: ``png``, ``jpeg``, ``gif``, ``webp`` or ``svg``; default from the file's suffix,
            else from the bytes themselves.
    """

    image: str | os.PathLike[str] | bytes
    caption: str = ""
    alt: str = ""
    format: str | None = None

    def data(self) -> tuple[str, bytes]:
        """``(format, bytes)`` of the image; a missing file or an unknown format is an
        :class:`InputError`."""
        if isinstance(self.image, bytes):
            content, name = self.image, "the figure's bytes"
        elif isinstance(self.image, (str, os.PathLike)):
            path = Path(self.image)
            if not path.is_file():
                raise MissingFileError(f"shiftpool.report.html: figure {str(path)!r} not found")
            content, name = path.read_bytes(), repr(str(path))
        else:
            raise InputTypeError("shiftpool.report.html: a figure's image must be a path or "
                                 f"bytes, got {type(self.image).__name__}")
        kind = self.format or _suffix_format(self.image) or _sniff(content)
        if kind not in IMAGE_TYPES:
            raise InputError(f"shiftpool.report.html: {name} is not an image a page can show "
                             f"({kind or 'unknown format'}); allowed: {', '.join(IMAGE_TYPES)}")
        return kind, content


Block = Paragraph | Table | Figure | Code | str


@dataclass(frozen=True)
class Section:
    """A heading and its blocks (a plain ``str`` block is a :class:`Paragraph`).

    Attributes:
        heading: the section's title.
        blocks: what it shows, in order.
        level: 2 (a section) to 4 (a sub-sub-section).
    """

    heading: str
    blocks: Sequence[Block] = ()
    level: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if self.level not in (2, 3, 4):
            raise InputError(f"shiftpool.report.html: a section's level must be 2, 3 or 4, got "
                             f"{self.level!r}")


def html_report(title: str, sections: Sequence[Section], *, subtitle: str = "",
                footer: str = "") -> str:
    """The page's HTML text (see the module docstring).

    Args:
        title: the page title and top heading.
        sections: the report's sections, in order; with three or more top-level ones the page
            starts with a list of links to them.
        subtitle: a line under the title (e.g. data set, model, epochs, seeds).
        footer: a line at the bottom (default: which shiftpool wrote it).

    Example:
        >>> text = html_report("Empty", [Section("Nothing", ["Nothing *yet*."])])
        >>> "<em>yet</em>" in text and "http" not in text.split("<body>")[1]
        True
    """
    from shiftpool import __version__

    if not isinstance(title, str) or not title.strip():
        raise InputError("shiftpool.report.html: the report needs a title")
    sections = list(sections)
    for section in sections:
        if not isinstance(section, Section):
            raise InputTypeError("shiftpool.report.html: sections must be Section objects, got "
                                 f"{type(section).__name__}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_text(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{_text(title)}</h1>",
    ]
    if subtitle:
        parts.append(f'<p class="subtitle">{_inline(subtitle)}</p>')
    top = [(i, s) for i, s in enumerate(sections) if s.level == 2]
    if len(top) >= 3:
        links = "".join(f'<li><a href="#s{i}">{_text(s.heading)}</a></li>' for i, s in top)
        parts.append(f'<nav><ul>{links}</ul></nav>')
    for i, section in enumerate(sections):
        parts.append(f'<section id="s{i}">')
        parts.append(f"<h{section.level}>{_text(section.heading)}</h{section.level}>")
        parts += [_block(block) for block in section.blocks]
        parts.append("</section>")
    parts.append(f"<footer>{_inline(footer or f'Written by shiftpool {__version__}.')}</footer>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def html_report_file(path: str | os.PathLike[str], title: str, sections: Sequence[Section],
                     **options: str) -> ReportFile:
    """The page as a :class:`~shiftpool.report.tables.ReportFile` (not written), to write
    together with other files (:func:`shiftpool.core.io.atomic_write_set`); ``options`` are
    :func:`html_report`'s."""
    return ReportFile(Path(path), html_report(title, sections, **options))


def write_html_report(path: str | os.PathLike[str], title: str, sections: Sequence[Section],
                      **options: str) -> Path:
    """Write the page to ``path`` atomically and return the path; ``options`` are
    :func:`html_report`'s (``subtitle``, ``footer``)."""
    return atomic_write_text(path, html_report(title, sections, **options))


# -- blocks ----------------------------------------------------------------------------------


def _block(block: Block) -> str:
    if isinstance(block, str):
        block = Paragraph(block)
    if isinstance(block, Paragraph):
        return _paragraphs(block.text)
    if isinstance(block, Code):
        return f"<pre><code>{_text(block.text)}</code></pre>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return _figure(block)
    raise InputTypeError("shiftpool.report.html: a block must be a Paragraph, Table, Figure, "
                         f"Code or str, got {type(block).__name__}")


def _paragraphs(text: str) -> str:
    out = []
    for chunk in re.split(r"\n\s*\n", text.strip()):
        lines = [line.strip() for line in chunk.splitlines() if line.strip()]
        if not lines:
            continue
        if all(line.startswith("- ") for line in lines):
            items = "".join(f"<li>{_inline(line[2:])}</li>" for line in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(out)


def _table(table: Table) -> str:
    keys = columns(table.rows)
    head = "".join(f'<th scope="col">{_text(k)}</th>' for k in keys)
    body = []
    for row in table.rows:
        cells = []
        for key in keys:
            text = format_value(row.get(key), table.column_digits.get(key, table.digits))
            numeric = ' class="num"' if _NUMBER.match(text) else ""
            cells.append(f"<td{numeric}>{_text(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    caption = f"<caption>{_inline(table.caption)}</caption>" if table.caption else ""
    return (f"<table>{caption}<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _figure(figure: Figure) -> str:
    kind, content = figure.data()
    source = f"data:{IMAGE_TYPES[kind]};base64,{base64.b64encode(content).decode('ascii')}"
    alt = figure.alt or figure.caption or "figure"
    caption = f"<figcaption>{_inline(figure.caption)}</figcaption>" if figure.caption else ""
    return f'<figure><img src="{source}" alt="{_text(alt)}">{caption}</figure>'


# -- text ------------------------------------------------------------------------------------


def _text(value: str) -> str:
    return html.escape(str(value), quote=True)


def _inline(value: str) -> str:
    """Escaped text with ``code``, **bold** and *italic* marked up."""

    def markup(match: re.Match[str]) -> str:
        code, bold, italic = match.groups()
        if code is not None:
            return f"<code>{_text(code)}</code>"
        if bold is not None:
            return f"<strong>{_inline(bold)}</strong>"
        return f"<em>{_inline(italic)}</em>"

    out, last = [], 0
    for match in _INLINE.finditer(value):
        out.append(_text(value[last:match.start()]))
        out.append(markup(match))
        last = match.end()
    out.append(_text(value[last:]))
    return "".join(out)


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def _suffix_format(image: object) -> str | None:
    if isinstance(image, bytes):
        return None
    suffix = Path(str(image)).suffix.lower().lstrip(".")
    return _SUFFIXES.get(suffix, suffix) if suffix else None


def _sniff(content: bytes) -> str | None:
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if content.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if content[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "webp"
    if b"<svg" in content[:4096]:
        return "svg"
    if content.startswith(b"%PDF"):
        return "pdf"
    return None
