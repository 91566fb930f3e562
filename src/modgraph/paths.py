"""Every filesystem location modgraph reads or writes.

Nothing in the package builds a path on its own: it asks this module. The
project root is ``$MODGRAPH_HOME`` when set, else the source checkout holding
this package (editable install), else the current directory. Everything is
written below ``data/``, ``results/`` or ``_build/`` of that root.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "root",
    "data_dir",
    "datasets_dir",
    "cache_dir",
    "models_dir",
    "jobs_dir",
    "results_dir",
    "build_dir",
    "notebooks_dir",
    "params_dir",
    "relative",
]


def root() -> Path:
    """Project root: ``$MODGRAPH_HOME``, the source checkout, or the cwd."""
    env = os.environ.get("MODGRAPH_HOME")
    if env:
        return Path(env).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "src" / "modgraph").is_dir():
        return checkout
    return Path.cwd().resolve()


def relative(path: str | os.PathLike) -> str:
    """``path`` as text relative to :func:`root` (POSIX) when it lies inside it, else unchanged.

    Messages and pages name project files this way, so they never show the
    machine's own folders.
    """
    path = Path(path)
    try:
        return path.resolve().relative_to(root()).as_posix() or "."
    except ValueError:
        return path.as_posix()


def data_dir() -> Path:
    """``data/``: downloads, decoded-array caches and trained models (git-ignored)."""
    return root() / "data"


def datasets_dir() -> Path:
    """Where raw data sets live or are downloaded to (``data/``)."""
    return data_dir()


def _folder(parent: Callable[[], Path], name: str, doc: str) -> Callable[[], Path]:
    """A function returning ``parent() / name`` (resolved at each call, so ``MODGRAPH_HOME`` is honoured)."""

    def folder() -> Path:
        return parent() / name

    folder.__doc__ = doc
    return folder


cache_dir = _folder(data_dir, "cache", "Decoded data-set arrays and other recomputable caches (``data/cache/``).")
models_dir = _folder(data_dir, "models", "The model store (``data/models/``).")
jobs_dir = _folder(data_dir, "jobs", "Cluster jobs' submission files and logs (``data/jobs/``, by submitit).")
build_dir = _folder(root, "_build", "The Jupyter Book build folder (``_build/``).")
notebooks_dir = _folder(root, "notebooks", "Notebook templates (``notebooks/``).")
params_dir = _folder(root, "params", "Per-profile notebook parameters (``params/``).")


def results_dir(profile: str | None = None) -> Path:
    """``results/`` or ``results/<profile>/``: numbers, figures, executed notebooks."""
    base = root() / "results"
    return base / profile if profile else base
