"""One figure style for the whole book, paper-numbered titles, and atomic PNG + PDF saving."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import matplotlib.pyplot as plt
import seaborn as sns

from modgraph import provenance

__all__ = ["FORMATS", "NotDrawn", "not_measured", "set_style", "paper_title", "save_figure"]

FORMATS = ("png", "pdf")
"""Every figure is saved in these formats."""


@dataclass(frozen=True)
class NotDrawn:
    """What a figure function returns instead of a figure when nothing it would show was measured."""

    reason: str


def not_measured(names: Iterable[str]) -> NotDrawn:
    """The :class:`NotDrawn` of a figure whose every panel (``names``) was not measured."""
    names = list(names)
    return NotDrawn(f"{', '.join(names)}: not measured, so there is nothing to draw; "
                    f"the note above says what is missing and how to get it.")


def set_style() -> None:
    """Apply the book's seaborn style (white grid, colour-blind palette, readable font sizes)."""
    sns.set_theme(
        context="notebook",
        style="whitegrid",
        palette="colorblind",
        rc={
            "figure.dpi": 110,
            "savefig.dpi": 200,
            "savefig.bbox": "tight",
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 9,
            "figure.titlesize": 13,
        },
    )


def paper_title(figure: str, text: str) -> str:
    """A title naming the paper's figure, e.g. ``paper_title("4", "...")`` -> ``"Fig. 4 (paper): ..."``."""
    if not str(figure).strip():
        raise ValueError("paper_title needs the paper's figure number, e.g. '4' or 'B1'")
    return f"Fig. {figure} (paper): {text}"


def save_figure(fig: plt.Figure | NotDrawn, name: str, directory: Path) -> list[Path]:
    """Write ``fig`` as ``directory/name.png`` and ``.pdf`` atomically; returns the paths.

    A :class:`NotDrawn` writes nothing and removes the files of an earlier run (returns ``[]``).
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"figure name must be a plain file stem like 'fig4_cifar10', got {name!r}")
    if isinstance(fig, NotDrawn):
        for fmt in FORMATS:
            (Path(directory) / f"{name}.{fmt}").unlink(missing_ok=True)
        return []
    written = []
    for fmt in FORMATS:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, bbox_inches="tight", metadata=_metadata(fmt))
        path = Path(directory) / f"{name}.{fmt}"
        provenance.atomic_write_bytes(path, buf.getvalue())
        written.append(path)
    return written


def _metadata(fmt: str) -> dict:
    # Fixed metadata keeps the files byte-identical across reruns (no timestamps).
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": "modgraph", "Producer": "modgraph"}
    return {"Software": "modgraph"}
