"""The one invalidation key: the source a result's code imports, and the library versions."""

from __future__ import annotations

import sys

import pytest

from modgraph import provenance


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A throw-away package ``fakepkg_prov`` on ``sys.path``: ``a`` imports ``b`` (lazily) and, for type checking
    only, ``c``."""
    root = tmp_path / "fakepkg_prov"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fakepkg_prov import c\n\n"
                               "def f():\n    from fakepkg_prov.b import g\n    return g()\n")
    (root / "b.py").write_text("import json\n\ndef g():\n    return 1\n")
    (root / "c.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [m for m in sys.modules if m.startswith("fakepkg_prov")]:
        del sys.modules[name]


def test_code_files_follow_the_package_imports_only(package):
    files = provenance.code_files(["fakepkg_prov.a"])
    assert sorted(files) == ["fakepkg_prov", "fakepkg_prov.a", "fakepkg_prov.b"]  # not c, not json
    assert files["fakepkg_prov.b"] == package / "b.py"
    assert provenance.module_file("fakepkg_prov.b.g") is None  # an attribute, not a module
    with pytest.raises(ValueError, match="no Python source for module 'fakepkg_prov.zz'"):
        provenance.code_files(["fakepkg_prov.zz"])


def test_code_hash_changes_with_imported_source_and_library_versions(package, monkeypatch):
    first = provenance.code_hash(["fakepkg_prov.a"])
    assert first == provenance.code_hash(["fakepkg_prov.a"]) and len(first) == 16
    (package / "c.py").write_text("X = 2\n")  # not imported at run time
    assert provenance.code_hash(["fakepkg_prov.a"]) == first
    (package / "b.py").write_text("def g():\n    return 2\n")
    edited = provenance.code_hash(["fakepkg_prov.a"])
    assert edited != first
    real = provenance.importlib.metadata.version
    monkeypatch.setattr(provenance.importlib.metadata, "version",
                        lambda name: "0.0-other" if name == "numpy" else real(name))
    assert provenance.code_hash(["fakepkg_prov.a"]) != edited
    assert provenance.LIBRARIES == ("torch", "torchvision", "numpy")


def test_a_modgraph_curve_depends_on_graph_but_not_on_plots():
    files = provenance.code_files(["modgraph.curve"])
    assert {"modgraph.graph", "modgraph.features", "modgraph.data", "modgraph.models"} <= set(files)
    assert not any(name.startswith(("modgraph.plots", "modgraph.report", "modgraph.book")) for name in files)
