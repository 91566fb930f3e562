"""The record of a section notebook: :class:`Section`, and the notes a page shows.

A notebook opens ``sec = Section.from_notebook("01_curves", globals())`` (or
``Section("01_curves", profile, params, output=output)``), saves figures with
``sec.save_figure(fig, "fig4_cifar10")``, records numbers with
``sec.record(key, value)``, states the paper's claims with
``sec.claims([...])`` and ends with ``sec.finish()``, which writes
``results/<output>/<notebook>.json`` (params, records, claims, figures,
provenance) and shows the provenance block. What it computes comes from
:mod:`modgraph.cache`.
"""

from __future__ import annotations

import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from modgraph import figures, paths, provenance, site, tables
from modgraph.cache import jsonable
from modgraph.claims import Claim, claims_table

__all__ = ["Section", "Finished", "Note", "coverage_note"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Section:
    """The record of one executed section notebook.

    ``notebook`` is the template's name (e.g. ``"01_curves"``), ``profile``
    the parameter profile, ``params`` the notebook's parameters (a dict of
    JSON-serialisable values), ``output`` the results folder name
    (``results/<output>/``; defaults to ``profile``, the book tool passes
    ``<profile>-custom`` for ``make figure``).
    """

    def __init__(self, notebook: str, profile: str, params: Mapping[str, Any], *, output: str | None = None) -> None:
        for what, name in (("notebook", notebook), ("profile", profile), ("output", output or profile)):
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(f"{what} must be a plain name like '01_curves' or 'smoke', got {name!r}")
        if not isinstance(params, Mapping):
            raise ValueError(f"params must be a mapping of parameter name -> value, got {type(params).__name__}")
        pd.set_option("display.max_colwidth", None)  # claims and notes are sentences: show them whole
        self._page = tables.install()  # in a notebook: page tables, figure links, warnings without paths
        if self._page:
            warnings.formatwarning = _page_warning
        self.notebook = notebook
        self.profile = profile
        self.output = output or profile
        self.params = jsonable(dict(params), "params")
        self.records: dict[str, Any] = {}
        self.claim_list: list[Claim] = []
        self.figures: list[str] = []
        self._started = time.perf_counter()
        self._started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    @classmethod
    def from_notebook(cls, notebook: str, namespace: Mapping[str, Any]) -> "Section":
        """The section of ``notebooks/<notebook>.ipynb``, its parameters read from ``namespace``.

        The names are those declared in the template's ``parameters`` cell
        (``profile`` and ``output`` included); a notebook passes ``globals()``.
        """
        import papermill

        template = paths.notebooks_dir() / f"{notebook}.ipynb"
        if not template.is_file():
            raise ValueError(f"no notebook template {template}")
        names = list(papermill.inspect_notebook(str(template)))
        missing = [name for name in names if name not in namespace]
        if missing or "profile" not in names:
            raise ValueError(f"{template}: parameters {missing or ['profile']} are not defined; "
                             "run the notebook from its parameters cell")
        params = {name: namespace[name] for name in names if name not in ("profile", "output")}
        return cls(notebook, namespace["profile"], params, output=namespace.get("output"))

    @property
    def results_dir(self) -> Path:
        """``results/<output>/``."""
        return paths.results_dir(self.output)

    @property
    def figures_dir(self) -> Path:
        """``results/<output>/figures/<notebook>/``."""
        return self.results_dir / "figures" / self.notebook

    @property
    def results_path(self) -> Path:
        """``results/<output>/<notebook>.json``."""
        return self.results_dir / f"{self.notebook}.json"

    def _repr_html_(self) -> str:
        return site.parameters_html(self.profile, paths.relative(self.results_dir), self.params)

    @property
    def rerun_command(self) -> str:
        """The ``make figure`` command that reruns this notebook with exactly its parameters."""
        return site.rerun_command(self.notebook, self.profile, self.params)

    def save_figure(self, fig: Any, name: str) -> list[Path]:
        """Save ``fig`` as PNG and PDF under :attr:`figures_dir`; returns the paths.

        In a notebook the figure is shown here, followed by links to its files
        and results and the command that reruns it. A
        :class:`modgraph.figures.NotDrawn` saves nothing and shows why instead.
        """
        written = figures.save_figure(fig, name, self.figures_dir)
        relative = [paths.relative(path) for path in written]
        self.figures.extend(rel for rel in relative if rel not in self.figures)
        if self._page:
            import matplotlib.pyplot as plt
            from IPython.display import HTML, Markdown, display

            if isinstance(fig, figures.NotDrawn):
                display(Markdown(site.admonition(f"Figure {name} not drawn", fig.reason)))
            else:
                display(fig)
                plt.close(fig)
                results = paths.relative(self.results_path)
                display(HTML(site.figure_footer(relative, results, self.rerun_command)))
        return written

    def record(self, key: str, value: Any) -> None:
        """Keep ``value`` (JSON-serialisable; NaN is stored as null) under ``key`` in the results file."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"record key must be a non-empty string, got {key!r}")
        self.records[key] = jsonable(value, f"record {key!r}")

    def claims(self, claims: Iterable[Claim]) -> pd.DataFrame:
        """Add the section's claims (from :func:`modgraph.claims.check`) and return their table."""
        claims = list(claims)
        table = claims_table(claims)
        self.claim_list.extend(claims)
        return table

    def finish(self) -> "Finished":
        """Write ``results/<output>/<notebook>.json`` and return the provenance block (displays as Markdown)."""
        payload = {
            "notebook": self.notebook,
            "profile": self.profile,
            "output": self.output,
            "params": self.params,
            "records": self.records,
            "claims": [c.as_dict() for c in self.claim_list],
            "figures": self.figures,
            "provenance": {
                "code_version": provenance.code_version(),
                "hardware": provenance.hardware(),
                "started": self._started_at,
                "wall_s": round(time.perf_counter() - self._started, 2),
            },
        }
        provenance.atomic_write_json(self.results_path, payload)
        return Finished(self.results_path, payload)



@dataclass(frozen=True)
class Finished:
    """What :meth:`Section.finish` wrote: its path and content; shows as a provenance block."""

    path: Path
    payload: dict = field(repr=False)

    def _repr_markdown_(self) -> str:
        prov = self.payload["provenance"]
        hw = prov["hardware"]
        cpu = f"CPU {hw.get('cpu')} ({hw.get('cpu_count')} cores, {hw.get('torch_threads')} torch threads)"
        device = hw.get("gpu") or cpu
        counts = site.claim_counts(self.payload["claims"])
        tally = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
        lines = [
            "**Provenance**",
            "",
            f"- profile: `{self.payload['profile']}` (results in `{paths.relative(self.path)}`)",
            f"- code version: `{prov['code_version']}`",
            f"- hardware: {device}; {hw.get('platform')}; Python {hw.get('python')}; torch {hw.get('torch')}",
            f"- started {prov['started']}, wall time {_duration(prov['wall_s'])}",
            f"- claims: {len(self.payload['claims'])}" + (f" ({tally})" if tally else ""),
            "- parameters: as listed at the top of this page",
        ]
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _page_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  line: str | None = None) -> str:
    """A warning as a notebook page shows it: its source file named without the machine's folders."""
    shown = paths.relative(filename)
    if Path(shown).is_absolute():
        roots = [p for p in sys.path if p and shown.startswith(p.rstrip("/") + "/")]
        shown = shown[len(max(roots, key=len).rstrip("/")) + 1:] if roots else Path(shown).name
    return f"{shown}:{lineno}: {category.__name__}: {message}\n"


@dataclass(frozen=True)
class Note:
    """A sentence for the page; displays as Markdown."""

    text: str

    def _repr_markdown_(self) -> str:
        return self.text


def coverage_note(what: str, measured: Sequence[str], paper: Sequence[str]) -> Note:
    """Say which of the paper's ``paper`` items (e.g. architectures) this run measures, and which it leaves out."""
    measured = list(measured)
    extra = [m for m in measured if m not in paper]
    left_out = [p for p in paper if p not in measured]
    text = f"This run measures {len(measured) - len(extra)} of the paper's {len(paper)} {what}"
    text += f" ({', '.join(m for m in measured if m in paper)})" if len(extra) < len(measured) else ""
    if left_out:
        text += f"; left out in this profile: {', '.join(left_out)}"
    if extra:
        text += f"; not in the paper: {', '.join(extra)}"
    return Note(text + ".")
