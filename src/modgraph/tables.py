"""Tables on the book's pages: a DataFrame as compact HTML that fits the text column.

:func:`to_html` drops the pandas index column (a meaningful index, such as
a named one, becomes the first column), prints each numeric column at one
precision chosen from its magnitude (:func:`column_decimals`), summarises long
lists and long text behind a click (:func:`summary`) and colours the verdicts of claims. :func:`install`
makes it the HTML form of every DataFrame shown in the running notebook; the
book's stylesheet (``book/_static/modgraph.css``) wraps long cells and
scrolls a table that is still too wide.
"""

from __future__ import annotations

import html
import math
import numbers
import textwrap
from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["VERDICT_CLASSES", "MAX_LIST", "LONG_CELL", "WIDE_TEXT", "LONG_TOKEN", "column_decimals", "format_number",
           "format_cell", "summary", "to_html", "install"]

VERDICT_CLASSES = {"holds": "verdict-holds", "does not hold": "verdict-fails", "not measured": "verdict-unmeasured"}
"""Verdict text (:data:`modgraph.claims.VERDICTS`) -> CSS class that colours it."""

MAX_LIST = 6
"""A list longer than this is shown as its first items and its length (the whole list when opened)."""

LONG_CELL = 140
"""Text longer than this is shown shortened (the whole text when opened)."""

WIDE_TEXT = 40
"""A cell with more text than this gets a wider column (CSS class ``text``), so its row stays low."""

LONG_TOKEN = 16
"""A cell holding a word longer than this (an identifier such as ``CarliniWagnerL2Attack``) may break it
anywhere (CSS class ``token``), so one long name cannot push the table past the text column."""

MISSING = "–"
"""How a missing number (None, NaN) is shown."""


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_missing(value: Any) -> bool:
    return value is None or (_is_number(value) and math.isnan(float(value)))


def column_decimals(values: Sequence[float]) -> int:
    """Decimals for a column of numbers: 0 when all are whole or the largest is >= 1000, 2 from 1, else 3."""
    finite = [float(v) for v in values if _is_number(v) and math.isfinite(float(v))]
    if not finite or all(v.is_integer() for v in finite):
        return 0
    largest = max(abs(v) for v in finite)
    return 0 if largest >= 1000 else 2 if largest >= 1 else 3


def format_number(value: float, decimals: int) -> str:
    """``value`` with ``decimals`` decimals and thousands separators; a non-zero value too small to show so is
    written in scientific notation with two significant digits; None/NaN is :data:`MISSING`."""
    if _is_missing(value):
        return MISSING
    value = float(value)
    if not math.isfinite(value):
        return "∞" if value > 0 else "−∞"
    if value != 0 and abs(value) < 0.5 * 10.0 ** -decimals:
        return f"{value:.1e}"
    return f"{value:,.{decimals}f}"


def format_cell(value: Any) -> str:
    """Text of a non-numeric cell: lists joined by commas, dicts as ``key: value``, booleans yes/no."""
    if _is_missing(value):
        return MISSING
    if isinstance(value, (list, tuple, np.ndarray)):
        items = [format_cell(v) if not _is_number(v) else format_number(v, column_decimals([v])) for v in value]
        return ", ".join(items)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {format_cell(v)}" for k, v in value.items())
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    return str(value)


def summary(text: str) -> str | None:
    """The short form a long cell shows until it is opened, or None when ``text`` is short enough.

    A list of more than :data:`MAX_LIST` comma-separated items shows its first
    items and their number; other text longer than :data:`LONG_CELL`
    characters is cut at a word.
    """
    items = text.split(", ")
    if len(items) > MAX_LIST:
        return ", ".join(items[:MAX_LIST - 2]) + f", … ({len(items)} in all)"
    if len(text) > LONG_CELL:
        return textwrap.shorten(text, LONG_CELL // 2, placeholder=" …")
    return None


def _cell_html(css: str, text: str) -> str:
    body = html.escape(text)
    if css == "num":
        return f'<td class="num">{body}</td>'
    if css.startswith("verdict-"):
        return f'<td><span class="verdict {css}">{body}</span></td>'
    short = summary(text)
    if short is not None:
        body = f"<details><summary>{html.escape(short)}</summary>{body}</details>"
    classes = [name for name, wanted in (("text", len(text) > WIDE_TEXT),
                                         ("token", max(map(len, text.split()), default=0) > LONG_TOKEN)) if wanted]
    return f'<td class="{" ".join(classes)}">{body}</td>' if classes else f"<td>{body}</td>"


def _without_index(frame: pd.DataFrame) -> pd.DataFrame:
    index = frame.index
    default = isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None
    return frame.reset_index(drop=True) if default else frame.reset_index()


def to_html(frame: pd.DataFrame) -> str:
    """``frame`` as an HTML table (class ``modgraph-table``) in a scrolling wrapper: no index column,
    numbers right-aligned at one precision per column, verdicts coloured."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"to_html expects a pandas DataFrame, got {type(frame).__name__}")
    frame = _without_index(frame)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    columns = []
    for name in frame.columns:
        values = frame[name].tolist()
        present = [v for v in values if not _is_missing(v)]
        if present and all(_is_number(v) for v in present):
            decimals = column_decimals(present)
            columns.append([("num", format_number(v, decimals)) for v in values])
        else:
            columns.append([(VERDICT_CLASSES.get(v, "") if isinstance(v, str) else "", format_cell(v))
                            for v in values])
    rows = ["<tr>" + "".join(_cell_html(css, text) for css, text in cells) + "</tr>" for cells in zip(*columns)]
    return (f'<div class="modgraph-table-wrap"><table class="modgraph-table">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def install() -> bool:
    """Show every DataFrame as :func:`to_html` in the running IPython kernel; False outside one."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, to_html)
    return True
