"""Figures of the book: one style (:mod:`.style`) and one module per figure family.

Section modules (``curves``, ``tsne``, later one per section) build
``matplotlib`` figures from library results; :func:`modgraph.figures.save_figure`
writes them as PNG and PDF.
"""

from modgraph.plots.style import paper_title, set_style

__all__ = ["paper_title", "set_style"]
