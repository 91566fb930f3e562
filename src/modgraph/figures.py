"""Figure files: a figure saved atomically as PNG and PDF, or the reason it was not drawn.

Below the plots: :class:`modgraph.report.Section` saves what the figure
functions of :mod:`modgraph.plots` return without importing them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from modgraph import provenance

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FORMATS", "NotDrawn", "not_measured", "save_figure"]

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


def save_figure(fig: "Figure | NotDrawn", name: str, directory: Path) -> list[Path]:
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
