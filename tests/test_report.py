"""The section record: results file, figures on the page, notes."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from modgraph import claims, report


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

    from modgraph import figures, tables

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
    assert sec.save_figure(figures.NotDrawn("imagenet50: not measured"), "fig5") == []
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


def test_coverage_note_names_what_is_left_out():
    note = report.coverage_note("architectures", ["vgg11", "resnet18"], ("vgg11", "vgg16", "resnet18"))
    assert note.text == ("This run measures 2 of the paper's 3 architectures (vgg11, resnet18); "
                         "left out in this profile: vgg16.")
    assert report.coverage_note("data sets", ["digits"], ("cifar10",))._repr_markdown_() == (
        "This run measures 0 of the paper's 1 data sets; left out in this profile: cifar10; not in the paper: digits.")
    assert report.coverage_note("x", ["a"], ("a",)).text == "This run measures 1 of the paper's 1 x (a)."
