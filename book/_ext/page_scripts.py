"""Sphinx extension of the book: every page lists each of its scripts once.

sphinx-thebe adds its inline configuration script (``const THEBE_JS_URL = ...``)
once per reading pass, so a page can carry it twice, and the second copy is a
JavaScript error ("Identifier 'THEBE_JS_URL' has already been declared") in
every browser. This drops repeated scripts from each page's context.
"""

from __future__ import annotations

from typing import Any


def _key(script: Any) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    return (getattr(script, "filename", None) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))


def unique_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Keep the first of equal entries of ``context["script_files"]`` (same file or body, same attributes;
    a body-only script has filename None or "")."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    kept = []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app: Any) -> dict:
    app.connect("html-page-context", unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
