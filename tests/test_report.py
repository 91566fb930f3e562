"""The section record and the compute cache."""

import json
import math
import sys

import numpy as np
import pytest

from modgraph import claims, paths, report


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path))
    return tmp_path


def test_section_writes_params_records_claims_figures_and_provenance(home):
    import matplotlib.pyplot as plt

    sec = report.Section("01_curves", "smoke", {"k": 3, "archs": ["vgg11"]})
    assert "Profile `smoke`" in sec._repr_markdown_() and "| `k` | `3` |" in sec._repr_markdown_()
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    written = sec.save_figure(fig, "fig4_cifar10")
    plt.close(fig)
    assert written == [home / "results/smoke/figures/01_curves/fig4_cifar10.png",
                       home / "results/smoke/figures/01_curves/fig4_cifar10.pdf"]
    sec.record("rho", np.float32(0.75))
    sec.record("missing", float("nan"))
    table = sec.claims([claims.check("rises", "rho", 0.75, ">", 0.5), claims.check("other", "x", None, ">", 0.5)])
    assert list(table["verdict"]) == ["holds", "does not hold"]
    done = sec.finish()
    data = json.loads((home / "results/smoke/01_curves.json").read_text())
    assert data == done.payload | {"params": {"k": 3, "archs": ["vgg11"]}}
    assert data["records"] == {"rho": 0.75, "missing": None}
    assert [c["holds"] for c in data["claims"]] == [True, False] and data["claims"][1]["value"] is None
    assert data["figures"] == ["results/smoke/figures/01_curves/fig4_cifar10.png",
                               "results/smoke/figures/01_curves/fig4_cifar10.pdf"]
    assert {"code_version", "hardware", "started", "wall_s"} <= set(data["provenance"])
    text = done._repr_markdown_()
    assert "claims: 1 of 2 hold" in text and data["provenance"]["code_version"] in text


def test_output_redirects_results(home):
    sec = report.Section("01_curves", "smoke", {}, output="smoke-custom")
    sec.finish()
    assert (home / "results/smoke-custom/01_curves.json").is_file()
    assert not (home / "results/smoke").exists()


@pytest.mark.parametrize("args", [("../x", "smoke", {}), ("01", "", {}), ("01", "smoke", [1])])
def test_section_rejects_bad_names_and_params(home, args):
    with pytest.raises(ValueError):
        report.Section(*args)


def test_record_rejects_what_json_cannot_hold(home):
    sec = report.Section("01", "smoke", {})
    with pytest.raises(ValueError, match="record 'obj' is not JSON serialisable"):
        sec.record("obj", object())
    with pytest.raises(ValueError, match="non-empty string"):
        sec.record("", 1)


def test_from_notebook_reads_declared_parameters(home):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("profile = 'smoke'\noutput = 'smoke'\nk = 3\n",
                                          metadata={"tags": ["parameters"]})]
    (home / "notebooks").mkdir()
    nbformat.write(nb, str(home / "notebooks/01_curves.ipynb"))
    sec = report.Section.from_notebook("01_curves", {"profile": "quick", "output": "quick-custom", "k": 5, "x": 1})
    assert (sec.profile, sec.output, sec.params) == ("quick", "quick-custom", {"k": 5})
    with pytest.raises(ValueError, match=r"parameters \['k'\] are not defined"):
        report.Section.from_notebook("01_curves", {"profile": "quick", "output": "quick"})
    with pytest.raises(ValueError, match="no notebook template"):
        report.Section.from_notebook("99_none", {})


def test_cached_computes_once_per_config(home):
    calls = []

    def compute():
        calls.append(1)
        return {"q": [0.1, float("nan")]}

    first = report.cached("curves", {"k": 3}, compute)
    assert report.cached("curves", {"k": 3}, compute) == first == {"q": [0.1, None]}
    assert len(calls) == 1
    report.cached("curves", {"k": 5}, compute)
    assert len(calls) == 2
    stored = json.loads(next((home / "data/cache/curves").glob("*.json")).read_text())
    assert {"config", "code_version", "value"} <= set(stored)


def test_cache_key_follows_the_source_of_the_named_code(home, tmp_path, monkeypatch):
    module = tmp_path / "fakemath_for_cache.py"
    module.write_text("Q = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = []
    report.cached("curves", {"k": 3}, lambda: calls.append(1) or 1, code=["fakemath_for_cache"])
    report.cached("curves", {"k": 3}, lambda: calls.append(1) or 1, code=["fakemath_for_cache"])
    assert len(calls) == 1
    before = report.source_hash(["fakemath_for_cache"])
    module.write_text("Q = 2\n")  # the maths changed: the cached value is stale
    assert report.source_hash(["fakemath_for_cache"]) != before
    report.cached("curves", {"k": 3}, lambda: calls.append(1) or 1, code=["fakemath_for_cache"])
    assert len(calls) == 2
    sys.modules.pop("fakemath_for_cache", None)


def test_cached_rejects_bad_kind_and_unserialisable_values(home):
    with pytest.raises(ValueError, match="cache kind"):
        report.cached("../up", {}, lambda: 1)
    with pytest.raises(ValueError, match="not JSON serialisable"):
        report.cached("curves", {}, lambda: object())
    assert not (paths.cache_dir() / "curves").exists() or not any((paths.cache_dir() / "curves").iterdir())


def test_accuracy_percent():
    assert report.accuracy_percent({"final_test_acc": 0.9478}) == 94.78
    assert report.accuracy_percent({}) is None
    assert math.isclose(report.accuracy_percent({"final_test_acc": 1}), 100.0)
