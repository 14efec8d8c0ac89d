"""HTML for the explorers' widgets: a rich table as a real HTML table (scrollable sideways, never wrapped), and a
PNG shown at the screen's pixel density."""

from __future__ import annotations

import io
import struct
from html import escape
from typing import Any

from rich.console import Console
from rich.style import Style
from rich.table import Table
from rich.text import Text

# rendering only (never displayed: a Console in Jupyter would display itself into the notebook otherwise)
_CONSOLE = Console(file=io.StringIO(), force_jupyter=False, width=10_000, color_system="truecolor")
TABLE_CSS = ("border-collapse:collapse;font:13px/1.4 system-ui,sans-serif;white-space:nowrap;"
             "font-variant-numeric:tabular-nums")  # fmt: skip
CELL_CSS = "padding:3px 10px;border-bottom:1px solid #e3e6ea"


def table_html(table: Table) -> str:
    """``table`` (its title, headers and markup cells) as an HTML ``<table>`` in a box that scrolls sideways where
    the page is narrower: one line per row, whatever the width."""
    columns = table.columns
    head = "".join(f"<th style='{CELL_CSS};text-align:{_align(c.justify)};border-bottom:2px solid #9aa3ad'>"
                   f"{_text_html(c.header)}</th>" for c in columns)  # fmt: skip
    rows = []
    for cells in zip(*(list(c.cells) for c in columns)):
        tds = "".join(f"<td style='{CELL_CSS};text-align:{_align(c.justify)}'>{_text_html(cell)}</td>"
                      for c, cell in zip(columns, cells))  # fmt: skip
        rows.append(f"<tr>{tds}</tr>")
    caption = (f"<caption style='caption-side:top;text-align:left;white-space:normal;padding:4px 0;"
               f"font-weight:600'>{_text_html(table.title)}</caption>" if table.title else "")  # fmt: skip
    return (f"<div class='iftgym-table' style='overflow-x:auto;max-width:100%'><table style='{TABLE_CSS}'>"
            f"{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")  # fmt: skip


def _align(justify: str | None) -> str:
    return {"right": "right", "center": "center"}.get(justify or "left", "left")


def _text_html(cell: Any) -> str:
    """A cell (rich markup, a Text or anything printable) as HTML spans with its bold, italic, dim and colour."""
    text = Text.from_markup(cell) if isinstance(cell, str) else cell if isinstance(cell, Text) else Text(str(cell))
    parts = []
    for segment in text.render(_CONSOLE, end=""):
        css = _css(segment.style)
        parts.append(f"<span style='{css}'>{escape(segment.text)}</span>" if css else escape(segment.text))
    return "".join(parts)


def _css(style: Style | None) -> str:
    if style is None:
        return ""
    css = []
    if style.color is not None and not style.color.is_default:
        css.append(f"color:{style.color.get_truecolor().hex}")
    if style.bold:
        css.append("font-weight:bold")
    if style.italic:
        css.append("font-style:italic")
    if style.dim:
        css.append("opacity:0.6")
    return ";".join(css)


def png_size(png: bytes) -> tuple[int, int]:
    """A PNG's width and height in pixels (from its header)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def show_png(picture: Any, png: bytes | None, density: int = 1) -> None:
    """Show ``png`` (drawn at ``density`` pixels per CSS pixel) in the Image widget ``picture`` at its CSS size, so a
    screen of that pixel density shows it sharp; ``None`` hides the picture (an empty image would be a broken-image
    icon) and keeps its last value."""
    if png is None:
        picture.layout.display = "none"
        return
    picture.value = png
    picture.width = str(png_size(png)[0] // density)
    picture.layout.display = None


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 (a status line's "1 rule", "2 models")."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
