"""The explorers' HTML: a rich table becomes a real HTML table (one line per row, scrollable sideways, its styles
kept) without displaying anything into Jupyter; pictures are shown at a pixel density, or hidden."""

from __future__ import annotations

import ipywidgets as widgets
import pytest
from rich.table import Table

from iftgym.interactive import html


def test_a_rich_table_becomes_an_html_table_with_its_styles() -> None:
    table = Table(title="step 20: mean ± 95% CI")
    table.add_column("algorithm")
    table.add_column("MSE", justify="right")
    table.add_row("sft [red](worse than untrained)[/]", "[bold green]0.120 ± 0.010[/]")
    table.add_row("[dim italic]untrained[/]", "0.5 < 1 & more")
    text = html.table_html(table)
    assert text.startswith("<div class='iftgym-table' style='overflow-x:auto;max-width:100%'><table ")
    assert "white-space:nowrap" in text and "<caption" in text and "step 20: mean ± 95% CI</caption>" in text
    assert text.count("<tr>") == 3 and text.count("<th ") == 2 and text.count("<td ") == 4
    assert "<span style='color:#800000'>(worse than untrained)</span>" in text
    assert "<span style='color:#008000;font-weight:bold'>0.120 ± 0.010</span>" in text
    assert "font-style:italic;opacity:0.6'>untrained</span>" in text
    assert "0.5 &lt; 1 &amp; more" in text and "text-align:right" in text  # escaped, right-aligned numbers


def test_the_table_renderer_never_displays_into_jupyter() -> None:
    assert html._CONSOLE.is_jupyter is False  # rich's Console displays itself into a notebook otherwise


def test_pictures_are_shown_at_a_density_or_hidden() -> None:
    from matplotlib.figure import Figure

    from iftgym.explain.canvas import figure_png

    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1])
    png = figure_png(fig, dpi=200)
    width, height = html.png_size(png)
    picture = widgets.Image(format="png")
    html.show_png(picture, png, density=2)
    assert picture.value == png and picture.width == str(width // 2) and picture.layout.display is None and height
    html.show_png(picture, None)
    assert picture.layout.display == "none" and picture.value == png  # hidden, not emptied: no broken image
    with pytest.raises(ValueError, match="not a PNG image"):
        html.png_size(b"GIF89a")
