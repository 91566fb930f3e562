"""The published book: its layout, and the page parts built from a chapter's results.

Chapter pages are ``notebooks/<name>.html`` in the built site; the book tool
copies each chapter's results (``results/<output>/<name>.json`` and its
figures) into the site under the same project-relative path, so a page links
to a project file ``path`` as ``../path`` (:func:`link`). This module builds
what a page shows around the library's results: the links and the rerun
command under a figure (:func:`figure_footer`), a note on a missing input
(:func:`admonition`), and the "Claims at a glance" page (:func:`claims_page`).
"""

from __future__ import annotations

import html
import re
import shlex
from typing import Any, Mapping, Sequence

import yaml

from modgraph.claims import VERDICTS, verdict
from modgraph.tables import VERDICT_CLASSES, column_decimals, format_number

__all__ = ["PAGES_DIR", "CLAIMS_PAGE", "link", "rerun_command", "figure_footer", "plain_markdown", "admonition",
           "parameters_html", "claim_counts", "claims_page"]

PAGES_DIR = "notebooks"
"""Folder of the chapter pages in the site (and of their sources in the book's tree)."""

CLAIMS_PAGE = "claims"
"""Name of the generated "Claims at a glance" page (``claims.md`` at the top of the book's tree)."""

_PLAIN = re.compile(r"^[A-Za-z0-9_.,:/+=@-]+$")


def link(path: str, *, page_dir: str = PAGES_DIR) -> str:
    """URL of the project file ``path`` (project-relative, POSIX) from a page in ``page_dir`` of the site."""
    if path.startswith("/") or ".." in path.split("/"):
        raise ValueError(f"expected a project-relative path like 'results/smoke/x.json', got {path!r}")
    depth = len([part for part in page_dir.split("/") if part])
    return "../" * depth + path


def _shell_word(text: str) -> str:
    if _PLAIN.match(text):
        return text
    return '"' + re.sub(r'(["\\])', r"\\\1", text) + '"'


def _yaml_text(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"), sort_keys=False).strip()
    return text.removesuffix("\n...").strip()


def rerun_command(notebook: str, profile: str, params: Mapping[str, Any]) -> str:
    """The ``make figure`` command that reruns ``notebook`` of ``profile`` with exactly ``params``.

    Every parameter is passed as ``-p name value`` (the value in YAML, as the
    book tool reads it), so the command reproduces the run even where the
    profile's file changes later; edit one value to vary it. A value with
    ``$`` or a backtick cannot pass through make and the shell unchanged.
    """
    bad = [name for name, value in params.items() if re.search(r"[$`]", _yaml_text(value))]
    if bad:
        raise ValueError(f"parameters {bad} hold '$' or '`', which make and the shell would expand; "
                         "use values without them")
    pairs = " ".join(f"-p {name} {_shell_word(_yaml_text(value))}" for name, value in params.items())
    command = f"make figure NB={notebook} PROFILE={profile}"
    return command + (f" P={shlex.quote(pairs)}" if pairs else "")


def figure_footer(files: Sequence[str], results: str, command: str) -> str:
    """HTML under a figure: links to its ``files`` (project-relative PNG, PDF, ...), to the chapter's
    ``results`` JSON, and the command that reruns it."""
    links = [f'<a href="{html.escape(link(f))}">{html.escape(f.rsplit(".", 1)[-1].upper())}</a>' for f in files]
    links.append(f'<a href="{html.escape(link(results))}">numbers (JSON)</a>')
    return (f'<div class="figure-footer"><p>Download: {" · ".join(links)}</p>'
            f'<p>Rerun this figure:</p><div class="highlight"><pre>{html.escape(command)}</pre></div></div>')


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>$~|#{}])")


def plain_markdown(text: str) -> str:
    """``text`` with Markdown's special characters escaped, so that it shows as written."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def admonition(title: str, text: str, *, kind: str = "warning") -> str:
    """A MyST admonition (Markdown) titled ``title`` saying ``text`` (both plain text); ``kind``:
    warning, note or tip."""
    kinds = ("warning", "note", "tip")
    if kind not in kinds:
        raise ValueError(f"unknown admonition kind {kind!r}; valid choices: {', '.join(kinds)}")
    body = plain_markdown(" ".join(text.split()))
    return f":::{{admonition}} {plain_markdown(title)}\n:class: {kind}\n{body}\n:::\n"


def parameters_html(profile: str, results: str, params: Mapping[str, Any]) -> str:
    """The run's settings, shown once at the top of a chapter: profile, results folder and a compact
    table of the parameters (values as YAML, as ``params/<profile>.yml`` writes them)."""
    rows = "".join(f"<tr><td><code>{html.escape(name)}</code></td><td><code>{html.escape(_yaml_text(value))}"
                   f"</code></td></tr>" for name, value in params.items())
    return (f'<div class="run-parameters"><p>Profile <code>{html.escape(profile)}</code>; results in '
            f"<code>{html.escape(results)}/</code>; this chapter ran with:</p>"
            f'<div class="modgraph-table-wrap"><table class="modgraph-table params-table"><thead><tr>'
            f"<th>parameter</th><th>value</th></tr></thead><tbody>{rows}</tbody></table></div></div>")


def claim_counts(claims: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Verdict -> number of ``claims`` (their JSON form) with it, every verdict present."""
    counts = dict.fromkeys(VERDICTS, 0)
    for c in claims:
        counts[verdict(c["holds"], c["value"])] += 1
    return counts


def _verdict_html(text: str) -> str:
    return f'<span class="verdict {VERDICT_CLASSES[text]}">{html.escape(text)}</span>'




def _totals_html(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    parts = [f'<span class="claims-count" data-verdict="{v}">{counts[v]}</span> {_verdict_html(v)}'
             for v in VERDICTS]
    return f'<span class="claims-total" data-total="{total}">{total}</span> claims: ' + ", ".join(parts)


def claims_page(chapters: Sequence[tuple[str, str, Mapping[str, Any] | None]], profile: str) -> str:
    """The "Claims at a glance" page (MyST Markdown with HTML tables) of the book built with ``profile``.

    ``chapters``: (notebook name, page title, its results JSON or None when the
    chapter wrote none) in book order. Every claim appears with its measured
    value, test and verdict, under a link to its chapter; totals on top.
    """
    every = [c for _, _, payload in chapters if payload for c in payload.get("claims", [])]
    lines = ["# Claims at a glance", "",
             f"Every claim of the paper that the chapters test, as measured in this build (profile "
             f"`{profile}`), read from the chapters' results files. A claim whose quantity could not be "
             f"measured (a data set or weights absent) is *not measured*; its chapter says why.", "",
             f'<p class="claims-summary" id="claims-totals">{_totals_html(claim_counts(every))}</p>', ""]
    for name, title, payload in chapters:
        claims = list(payload.get("claims", [])) if payload else []
        label = re.sub(r"([\\\[\]*_`])", r"\\\1", title)
        lines += [f"## [{label}]({PAGES_DIR}/{name}.ipynb)", ""]
        if payload is None:
            lines += ["<p>This chapter wrote no results file.</p>", ""]
            continue
        decimals = column_decimals([c["value"] for c in claims if c["value"] is not None])
        rows = "".join(
            f"<tr><td>{html.escape(c['claim'])}</td>"
            f"<td class=\"num\">{html.escape(format_number(c['value'], decimals))}</td>"
            f"<td>{html.escape(c['op'])} {html.escape(format(c['threshold'], 'g'))}</td>"
            f"<td>{_verdict_html(verdict(c['holds'], c['value']))}</td>"
            f"<td>{html.escape(c.get('source', ''))}</td></tr>" for c in claims)
        lines += [f'<p data-chapter="{html.escape(name)}">{_totals_html(claim_counts(claims))}</p>', "",
                  '<div class="modgraph-table-wrap"><table class="modgraph-table claims-table"><thead><tr>'
                  "<th>claim</th><th>measured</th><th>test</th><th>verdict</th><th>paper</th></tr></thead>"
                  f"<tbody>{rows}</tbody></table></div>", ""]
    return "\n".join(lines)
