"""Every filesystem location modgraph reads or writes.

Nothing in the package builds a path on its own: it asks this module. The
project root is ``$MODGRAPH_HOME`` when set, else the source checkout holding
this package (editable install), else the current directory. Everything is
written below ``data/``, ``results/`` or ``_build/`` of that root.
"""

from __future__ import annotations

import os
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


def cache_dir() -> Path:
    """Decoded data-set arrays and other recomputable caches (``data/cache/``)."""
    return data_dir() / "cache"


def models_dir() -> Path:
    """The model store (``data/models/``)."""
    return data_dir() / "models"


def jobs_dir() -> Path:
    """Cluster jobs' submission files and logs (``data/jobs/``, by submitit)."""
    return data_dir() / "jobs"


def results_dir(profile: str | None = None) -> Path:
    """``results/`` or ``results/<profile>/``: numbers, figures, executed notebooks."""
    base = root() / "results"
    return base / profile if profile else base


def build_dir() -> Path:
    """The Jupyter Book build folder (``_build/``)."""
    return root() / "_build"


def notebooks_dir() -> Path:
    """Notebook templates (``notebooks/``)."""
    return root() / "notebooks"


def params_dir() -> Path:
    """Per-profile notebook parameters (``params/``)."""
    return root() / "params"
