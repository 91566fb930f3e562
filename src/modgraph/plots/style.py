"""One figure style for the whole book and paper-numbered titles."""

from __future__ import annotations

import seaborn as sns

__all__ = ["set_style", "paper_title"]


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
