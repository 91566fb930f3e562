"""The section record and the compute cache."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from modgraph import claims, paths, report
from modgraph.curve import CurveSettings


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path))
    return tmp_path


def test_section_writes_params_records_claims_figures_and_provenance(home):
    import matplotlib.pyplot as plt

    sec = report.Section("01_curves", "smoke", {"k": 3, "archs": ["vgg11"]})
    header = sec._repr_html_()
    assert "Profile <code>smoke</code>" in header and "<td><code>k</code></td><td><code>3</code></td>" in header
    assert "<code>[vgg11]</code>" in header and str(home) not in header
    assert sec.rerun_command == "make figure NB=01_curves PROFILE=smoke P='-p k 3 -p archs \"[vgg11]\"'"
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    written = sec.save_figure(fig, "fig4_cifar10")
    plt.close(fig)
    assert written == [home / "results/smoke/figures/01_curves/fig4_cifar10.png",
                       home / "results/smoke/figures/01_curves/fig4_cifar10.pdf"]
    sec.record("rho", np.float32(0.75))
    sec.record("missing", float("nan"))
    table = sec.claims([claims.check("rises", "rho", 0.75, ">", 0.5), claims.check("other", "x", None, ">", 0.5)])
    assert list(table["verdict"]) == ["holds", "not measured"]
    done = sec.finish()
    data = json.loads((home / "results/smoke/01_curves.json").read_text())
    assert data == done.payload | {"params": {"k": 3, "archs": ["vgg11"]}}
    assert data["records"] == {"rho": 0.75, "missing": None}
    assert [c["holds"] for c in data["claims"]] == [True, False] and data["claims"][1]["value"] is None
    assert data["figures"] == ["results/smoke/figures/01_curves/fig4_cifar10.png",
                               "results/smoke/figures/01_curves/fig4_cifar10.pdf"]
    assert {"code_version", "hardware", "started", "wall_s"} <= set(data["provenance"])
    text = done._repr_markdown_()
    assert "claims: 2 (1 holds, 1 not measured)" in text and data["provenance"]["code_version"] in text
    assert "`k`" not in text  # the parameters are shown once, at the top of the page


def test_section_in_a_notebook_shows_figure_links_and_missing_figures(home, monkeypatch):
    import matplotlib.pyplot as plt
    from IPython.display import HTML, Markdown

    from modgraph import plots, tables

    shown = []
    monkeypatch.setattr(tables, "install", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    monkeypatch.setattr(report.warnings, "formatwarning", report.warnings.formatwarning)
    sec = report.Section("01_curves", "smoke", {"k": 3})
    fig, ax = plt.subplots()
    sec.save_figure(fig, "fig4")
    assert shown[0] is fig and not plt.fignum_exists(fig.number)  # shown once, here, then closed
    footer = shown[1].data
    assert isinstance(shown[1], HTML)
    for href in ("../results/smoke/figures/01_curves/fig4.png", "../results/smoke/figures/01_curves/fig4.pdf",
                 "../results/smoke/01_curves.json"):
        assert f'href="{href}"' in footer
    assert "make figure NB=01_curves PROFILE=smoke P=&#x27;-p k 3&#x27;" in footer
    assert sec.save_figure(plots.NotDrawn("imagenet50: not measured"), "fig5") == []
    assert isinstance(shown[2], Markdown) and "{admonition} Figure fig5 not drawn" in shown[2].data
    assert "results/smoke/figures/01_curves/fig5.png" not in sec.figures


def test_page_warnings_name_no_machine_folders(home):
    inside = report._page_warning(UserWarning("w"), UserWarning, str(home / "src/modgraph/x.py"), 3)
    assert inside == "src/modgraph/x.py:3: UserWarning: w\n"
    outside = report._page_warning("w", RuntimeWarning, str(Path(sys.path[-1]) / "pkg" / "mod.py"), 7)
    assert outside == "pkg/mod.py:7: RuntimeWarning: w\n"


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


@pytest.mark.parametrize("corrupt", [b"{\"kind\": \"curv", b"", b"[1, 2]", b"{\"value\": 1}"])
def test_corrupted_cache_entry_is_recomputed_with_a_warning(home, corrupt):
    calls = []

    def compute():
        calls.append(1)
        return {"q": 0.5}

    report.cached("corrupt", {"k": 7}, compute)
    path = next((home / "data/cache/corrupt").glob("*.json"))
    path.write_bytes(corrupt)
    with pytest.warns(UserWarning, match=f"cache entry {path} is unreadable or corrupted"):
        assert report.cached("corrupt", {"k": 7}, compute) == {"q": 0.5}
    assert len(calls) == 2 and report.cached("corrupt", {"k": 7}, compute) == {"q": 0.5} and len(calls) == 2
    path.unlink()


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


class FakeStored:
    def __init__(self, model, acc=0.5):
        self.model = model
        self.metrics = {"final_test_acc": acc}


@pytest.fixture
def fake_store(home, monkeypatch):
    """get_model returns an untrained tiny VGG11 (no training in unit tests); counts its calls."""
    from modgraph import store
    from modgraph.models import create_model

    calls = []

    def get_model(spec, device=None, progress=True):
        calls.append(spec)
        return FakeStored(create_model(spec.arch, width=1 / 16, seed=spec.seed).eval())

    monkeypatch.setattr(store, "get_model", get_model)
    return calls


def test_cached_curve_equals_direct_computation_and_is_reused(fake_store):
    from modgraph.curve import modularity_curve
    from modgraph.data import load_dataset
    from modgraph.models import create_model
    from modgraph.store import ModelSpec

    spec = ModelSpec("vgg11", "digits", recipe="smoke", width=1 / 16)
    curve = report.cached_curve(spec, CurveSettings(n=40, k=3, repeats=2, seed=1), progress=False)
    images, labels = load_dataset("digits", "test", progress=False).tensors()
    direct = modularity_curve(create_model("vgg11", width=1 / 16, seed=0).eval(), images, labels, n=40, k=3,
                              repeats=2, seed=1, progress=False)
    np.testing.assert_allclose(curve.array, direct.array, rtol=1e-6, atol=1e-9)
    assert curve.layers == direct.layers
    assert curve.meta["test_accuracy"] == 50.0 and curve.meta["model"] == "vgg11"
    again = report.cached_curve(spec, CurveSettings(n=40, k=3, repeats=2, seed=1), progress=False)
    assert again == curve and len(fake_store) == 1  # second call: from the cache, no model needed
    report.cached_curve(spec, CurveSettings(n=40, k=5, repeats=2, seed=1), progress=False)
    assert len(fake_store) == 2


def test_model_curves_reports_absent_data_sets(fake_store):
    study = report.model_curves(["vgg11"], ["digits", "imagenet50"], CurveSettings(n=30, repeats=1), recipe="smoke",
                                width=1 / 16, progress=False)
    assert list(study.curves) == ["digits"] and list(study.curves["digits"]) == ["vgg11"]
    assert "imagenet" in study.missing["imagenet50"]
    panels = study.panels()
    assert list(panels) == ["digits", "imagenet50"] and panels["imagenet50"] == study.missing["imagenet50"]
    note = study._repr_markdown_()
    assert ":::{admonition} imagenet50: not measured\n:class: warning\n" in note
    assert "data/imagenet/val" in note and str(paths.root()) not in note  # project-relative paths only
    verdicts = study.claims(source="Fig. 4")
    assert len(verdicts) == 6 and all(not c.holds for c in verdicts[3:])
    assert verdicts[3].reason == study.missing["imagenet50"]
    table = study.accuracy_table()
    assert table.loc[0, "test accuracy (ours, %)"] == 50.0 and math.isnan(table.loc[0, "paper (%)"])
    assert json.loads(json.dumps(study.to_dict()))["missing"] == study.missing


def test_model_curves_keeps_the_requested_snapshots(fake_store):
    report.model_curves(["vgg11", "vgg13"], ["digits"], CurveSettings(n=30, repeats=1), recipe="smoke",
                        width=1 / 16, snapshots={"vgg13": 2}, progress=False)
    assert [(s.arch, s.snapshot_epochs) for s in fake_store] == [("vgg11", ()), ("vgg13", (0, 1, 2))]
    fake_store.clear()
    report.model_curves(["vgg11"], ["digits"], CurveSettings(n=31, repeats=1), recipe="smoke", width=1 / 16,
                        snapshots={"vgg13": 2}, progress=False)  # a run restricted to fewer models
    assert [(s.arch, s.snapshot_epochs) for s in fake_store] == [("vgg11", ())]
    with pytest.raises(ValueError, match="unknown model 'vgg99'; valid choices"):
        report.model_curves(["vgg11"], ["digits"], recipe="smoke", snapshots={"vgg99": 2})
    with pytest.raises(ValueError, match=r"snapshots\['vgg11'\] must be the last snapshot epoch, an int in 0..2"):
        report.model_curves(["vgg11"], ["digits"], recipe="smoke", snapshots={"vgg11": -1})
    with pytest.raises(ValueError, match=r"int in 0..2 \(recipe 'smoke' trains 2 epochs\), got 5"):
        report.model_curves(["vgg11"], ["digits"], recipe="smoke", snapshots={"vgg11": 5}, progress=False)
    assert report.check_snapshots({"vgg11": 5}, recipe="smoke", epochs=5) == {"vgg11": 5}


def test_accuracy_table_marks_quoted_values():
    from modgraph.curve import Curve

    c = Curve(("a", "b"), [[0.1, 0.2]], {"test_accuracy": 93.1})
    table = report.CurveStudy(("cifar10",), {"cifar10": {"resnet18": c, "resnet20": c}}).accuracy_table()
    rows = {(r["data set"], r["model"]): r for r in table.to_dict(orient="records")}
    assert len(rows) == 3 * 9 + 1  # all of Table B2, and the measured model it does not list
    assert rows["cifar10", "resnet18"]["paper (%)"] == 94.78 and rows["cifar10", "resnet18"]["layers"] == 2
    assert rows["cifar10", "resnet18"]["paper source"] == "Table B2 (quoted)"
    assert rows["cifar10", "resnet18"]["test accuracy (ours, %)"] == 93.1
    assert math.isnan(rows["cifar10", "vgg13"]["test accuracy (ours, %)"])  # quoted, not measured
    assert rows["cifar100", "vgg11"]["paper (%)"] == 66.87 and rows["imagenet50", "resnet152"]["paper (%)"] == 87.89
    assert math.isnan(rows["cifar10", "resnet20"]["paper (%)"]) and rows["cifar10", "resnet20"]["paper source"] == ""


def test_pretrained_curves_say_what_is_missing(home):
    study = report.pretrained_curves(["tv_resnet18"], "imagenet50", progress=False)
    assert study.curves == {} and "imagenet" in study.missing["imagenet50"]
    none = report.pretrained_curves([], "imagenet50")
    assert none.missing == {"imagenet50": "no models were requested in this profile"}


def test_cached_embeddings_use_the_first_curve_sample(fake_store, monkeypatch):
    from modgraph.data import load_dataset, sample_indices
    from modgraph.plots import tsne
    from modgraph.store import ModelSpec

    monkeypatch.setattr(tsne, "layer_embeddings",
                        lambda model, images, **kw: {"only": images.reshape(len(images), -1)[:, :2].numpy()})
    emb = report.cached_embeddings(ModelSpec("vgg11", "digits", recipe="smoke"), CurveSettings(n=25, seed=2),
                                   progress=False)
    data = load_dataset("digits", "test", progress=False)
    index = sample_indices(len(data), 25, 1, 2)[0]
    np.testing.assert_array_equal(emb.labels, data.labels[index])
    pixels = data.images[index].transpose(0, 3, 1, 2).reshape(25, -1)[:, :2] / 255
    np.testing.assert_allclose(emb.layers["only"], pixels, rtol=1e-6)
    assert emb.classes == data.classes


def test_coverage_note_names_what_is_left_out():
    note = report.coverage_note("architectures", ["vgg11", "resnet18"], ("vgg11", "vgg16", "resnet18"))
    assert note.text == ("This run measures 2 of the paper's 3 architectures (vgg11, resnet18); "
                         "left out in this profile: vgg16.")
    assert report.coverage_note("data sets", ["digits"], ("cifar10",))._repr_markdown_() == (
        "This run measures 0 of the paper's 1 data sets; left out in this profile: cifar10; not in the paper: digits.")
    assert report.coverage_note("x", ["a"], ("a",)).text == "This run measures 1 of the paper's 1 x (a)."
