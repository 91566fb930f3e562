"""Figures of the book: one style (:mod:`.style`) and one module per figure family.

Section modules (``curves``, ``tsne``, later one per section) build
``matplotlib`` figures from library results; :func:`save_figure` writes them
as PNG and PDF.
"""

from modgraph.plots.style import FORMATS, NotDrawn, not_measured, paper_title, save_figure, set_style

__all__ = ["FORMATS", "NotDrawn", "not_measured", "paper_title", "save_figure", "set_style"]
