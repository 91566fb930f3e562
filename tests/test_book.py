"""The book tool on a tiny synthetic project: stamps, parameter checks, failures, GPU profiles, the CLI."""

import json
import re
from pathlib import Path

import nbformat
import pytest
from conftest import BODY, write_notebook, write_params
import yaml

from modgraph import book

@pytest.fixture
def fake_execute(monkeypatch):
    """Replace papermill execution by writing the executed file; records the calls."""
    calls = []

    def execute(notebook, params, output, *, progress=True):
        calls.append((notebook, dict(params), output))
        path = book._executed_path(output, notebook)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        return 0.0

    monkeypatch.setattr(book, "execute_notebook", execute)
    return calls


@pytest.fixture
def fake_build(monkeypatch):
    builds = []

    def build(tag, pages, *, progress=True):
        builds.append((tag, dict(pages)))
        return Path("index.html")

    monkeypatch.setattr(book, "build_html", build)
    return builds


def test_unknown_notebook_lists_valid_ones(project, fake_execute, fake_build):
    with pytest.raises(ValueError, match=r"unknown notebook 'cc'; valid choices: aa_first, bb_second"):
        book.run_figure("cc", {}, "smoke")
    assert fake_execute == []


def test_listed_notebook_must_exist(project, fake_execute, fake_build):
    (project / "notebooks" / "bb_second.ipynb").unlink()
    with pytest.raises(ValueError, match="bb_second.*does not exist"):
        book.run_book("smoke")
    assert fake_execute == []


def test_param_file_errors_name_the_problem(project, fake_execute, fake_build):
    write_params(project, "smoke", {"aa_first": {"y": 1}})
    with pytest.raises(ValueError, match=r"no parameter 'y'; valid names: x, items"):
        book.run_book("smoke")
    write_params(project, "smoke", {"zz_third": {"x": 1}})
    with pytest.raises(ValueError, match=r"unknown notebooks \['zz_third'\]"):
        book.run_book("smoke")
    write_params(project, "smoke", {"defaults": {"typo": 1}})
    with pytest.raises(ValueError, match=r"defaults \['typo'\] are declared by no notebook"):
        book.run_book("smoke")
    write_params(project, "smoke", {"aa_first": {"x": "two"}})
    with pytest.raises(ValueError, match=r"'x' of aa_first expects int .*got str 'two'"):
        book.run_book("smoke")
    write_params(project, "smoke", {"aa_first": {"profile": "paper"}})
    with pytest.raises(ValueError, match="sets itself"):
        book.run_book("smoke")
    assert fake_execute == []


def test_notebook_must_declare_reserved_parameters(project, fake_execute, fake_build):
    nb = nbformat.read(str(project / "notebooks" / "aa_first.ipynb"), as_version=4)
    nb.cells[1].source = "x = 1\nitems = []\n"
    nbformat.write(nb, str(project / "notebooks" / "aa_first.ipynb"))
    with pytest.raises(ValueError, match="must declare profile, output"):
        book.run_book("smoke")


def test_figure_checks_overrides_before_running(project, fake_execute, fake_build):
    with pytest.raises(ValueError, match=r"no parameter 'k'; valid names: x, items"):
        book.run_figure("aa_first", {"k": 5}, "smoke")
    with pytest.raises(ValueError, match="expects int"):
        book.run_figure("aa_first", {"x": [1]}, "smoke")
    assert fake_execute == [] and fake_build == []


@pytest.mark.parametrize(("overrides", "message"), [
    ({"x": None}, "'x' of aa_first expects int (default 1), got null"),
    ({"items": [1, "a"]}, "'items' of aa_first expects a list of int (default [1, 2]), got [1, 'a']"),
    ({"items": [1, None]}, "expects a list of int"),
])
def test_figure_refuses_null_and_wrong_items_before_running(project, fake_execute, fake_build, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        book.run_figure("aa_first", overrides, "smoke")
    assert fake_execute == [] and fake_build == []


def test_parameters_that_must_fit_together_are_checked_before_running(project, fake_execute, fake_build,
                                                                       monkeypatch):
    def check(params):
        if params["x"] > 2 * len(params["items"]):
            raise ValueError(f"x={params['x']} exceeds twice the {len(params['items'])} items")

    monkeypatch.setitem(book.PARAMETER_CHECKS._items, "bb_second", check)
    with pytest.raises(ValueError, match=r"overrides \{'x': 3\}: parameters of bb_second do not fit together: "
                                         r"x=3 exceeds twice the 1 items"):
        book.run_figure("bb_second", {"x": 3}, "smoke")
    write_params(project, "smoke", {"defaults": {"x": 5}, "bb_second": {"items": [3]}})
    with pytest.raises(ValueError, match="params/smoke.yml: parameters of bb_second do not fit together"):
        book.run_book("smoke")
    assert fake_execute == [] and fake_build == []


def test_stamps_rerun_exactly_what_changed(project, fake_execute, fake_build, monkeypatch):
    book.run_book("smoke", progress=False)
    assert [c[0] for c in fake_execute] == ["aa_first", "bb_second"]
    assert fake_build[-1][0] == "smoke"
    stamp = json.loads((project / "results/smoke/stamps/aa_first.json").read_text())
    assert {"template", "params", "code"} <= set(stamp)

    fake_execute.clear()
    book.run_book("smoke", progress=False)
    assert fake_execute == []  # nothing changed

    write_notebook(project / "notebooks" / "aa_first.ipynb", "aa_first", body=BODY + "y = 2\n")
    assert book.stale_reason("aa_first", book.notebook_params(book.get_profile("smoke"), "aa_first"),
                             "smoke") == "template changed"
    book.run_book("smoke", progress=False)
    assert [c[0] for c in fake_execute] == ["aa_first"]

    fake_execute.clear()
    write_params(project, "smoke", {"defaults": {"x": 2}, "bb_second": {"items": [4]}})
    book.run_book("smoke", progress=False)
    assert [c[0] for c in fake_execute] == ["bb_second"]

    fake_execute.clear()
    monkeypatch.setattr(book.provenance, "code_hash", lambda modules: "edited library")
    book.run_book("smoke", progress=False)
    assert [c[0] for c in fake_execute] == ["aa_first", "bb_second"]


def test_notebook_code_is_the_modgraph_modules_it_imports(project):
    write_notebook(project / "notebooks" / "aa_first.ipynb", "aa_first",
                   body="%matplotlib inline\nfrom modgraph import graph, paper\nfrom modgraph.curve import Curve\n"
                        "import modgraph.cka as cka\nimport json\n" + BODY)
    assert book.notebook_code("aa_first") == ("modgraph", "modgraph.cka", "modgraph.curve", "modgraph.graph",
                                              "modgraph.paper")
    assert book.notebook_code("bb_second") == ()


def test_gpu_profile_stops_on_stale_results_without_cuda(project, fake_execute, fake_build):
    with pytest.raises(book.BookError, match=r"aa_first \(never executed\); bb_second \(never executed\).*FORCE=1"):
        book.run_book("gpu", progress=False)
    assert fake_execute == [] and fake_build == []
    book.run_book("gpu", force=True, progress=False)
    assert [c[0] for c in fake_execute] == ["aa_first", "bb_second"]
    fake_execute.clear()
    book.run_book("gpu", progress=False)  # up-to-date committed results are reused without CUDA
    assert fake_execute == [] and fake_build[-1][0] == "gpu"


def test_execution_failure_keeps_partial_and_earlier_results(project, fake_build):
    write_params(project, "smoke", {"defaults": {"x": 2}})
    book.run_book("smoke", progress=False)
    executed = project / "results/smoke/aa_first.ipynb"
    assert (project / "results/smoke/aa_first.txt").read_text() == "smoke 2 [1, 2]"
    before = executed.read_bytes()
    stamp_before = (project / "results/smoke/stamps/aa_first.json").read_bytes()

    write_params(project, "smoke", {"defaults": {"x": 13}})
    with pytest.raises(book.NotebookFailed, match=r"notebook aa_first failed in cell \[\d+\]: RuntimeError: unlucky x"):
        book.run_book("smoke", progress=False)
    assert executed.read_bytes() == before
    assert (project / "results/smoke/stamps/aa_first.json").read_bytes() == stamp_before
    partial = nbformat.read(str(project / "_build/failed/smoke/aa_first.ipynb"), as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in partial.cells if c.cell_type == "code"
               for o in c.get("outputs", []))
    assert not list((project / "results/smoke").glob(".*running*"))


def test_figure_runs_one_notebook_with_overrides(project, fake_build):
    book.run_figure("bb_second", {"x": 7, "items": [9]}, "smoke", progress=False)
    assert (project / "results/smoke-custom/bb_second.txt").read_text() == "smoke 7 [9]"
    assert (project / "results/smoke/aa_first.ipynb").is_file()  # the other pages come from the profile
    assert not (project / "results/smoke/bb_second.ipynb").exists()  # the replaced page is not executed there
    tag, pages = fake_build[-1]
    assert tag == "smoke-custom"
    assert pages["bb_second"] == project / "results/smoke-custom/bb_second.ipynb"
    assert pages["aa_first"] == project / "results/smoke/aa_first.ipynb"


def test_build_html_stages_sources_and_builds(project):
    for name in ("aa_first", "bb_second"):
        write_notebook(project / "results/smoke" / f"{name}.ipynb", name)
    index = book.build_html("smoke", {n: project / "results/smoke" / f"{n}.ipynb" for n in ("aa_first", "bb_second")},
                            progress=False)
    assert index == project / "_build/smoke/_build/html/index.html" and index.is_file()
    assert (project / "_build/smoke/_build/html/notebooks/bb_second.html").is_file()
    staged = project / "_build/smoke/src"
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == [
        "_config.yml", "_toc.yml", "book/intro.md", "notebooks/aa_first.ipynb", "notebooks/bb_second.ipynb"]


def test_build_failure_is_reported_briefly(project):
    (project / "results/smoke").mkdir(parents=True)
    for name in ("aa_first", "bb_second"):
        (project / "results/smoke" / f"{name}.ipynb").write_text("{}")
    with pytest.raises(book.BookError, match=r"(?s)jupyter-book build failed for smoke.*missing a key: cells") as err:
        book.build_html("smoke", {n: project / "results/smoke" / f"{n}.ipynb" for n in ("aa_first", "bb_second")},
                        progress=False)
    assert "Traceback" not in str(err.value) and len(str(err.value).splitlines()) < 12


def test_cli_exit_codes_and_messages(project, fake_execute, fake_build, capsys):
    assert book.main(["build", "--profile", "nope"]) == 2
    assert "unknown profile 'nope'; valid choices: auto, gpu, smoke" in capsys.readouterr().err
    assert book.main(["figure", "aa_first", "--profile", "smoke", "-p", "items", "[1,"]) == 2
    assert "malformed value for parameter 'items'" in capsys.readouterr().err
    assert book.main(["build", "--profile", "gpu", "--quiet"]) == 1
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert book.main(["build", "--profile", "smoke", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == "index.html"


@pytest.mark.slow
def test_chapter_run_as_in_jupyter_matches_make_figure(tmp_path, monkeypatch):
    """00_overview (the cheapest chapter: one VGG11) executed by nbclient as shipped, nothing injected."""
    import os
    import shutil

    import modgraph
    from nbclient import NotebookClient

    root = book.paths.root()
    for name in ("notebooks", "params"):
        shutil.copytree(root / name, tmp_path / name)
    shutil.copy(root / "_toc.yml", tmp_path / "_toc.yml")
    monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(modgraph.__file__).parents[1]),
                                                                   os.environ.get("PYTHONPATH")])))
    monkeypatch.setattr(book, "_execute_plan", lambda *args, **kwargs: None)  # the other pages
    monkeypatch.setattr(book, "build_html", lambda tag, pages, progress=True: Path("index.html"))
    results = tmp_path / "results/smoke-custom/00_overview.json"

    book.run_figure("00_overview", {}, "smoke", progress=False)
    figure = json.loads(results.read_text())
    results.unlink()
    nb = nbformat.read(str(tmp_path / "notebooks/00_overview.ipynb"), as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=600,
                   resources={"metadata": {"path": str(tmp_path / "notebooks")}}).execute()
    jupyter = json.loads(results.read_text())

    assert not (tmp_path / "results/smoke").exists()
    assert (jupyter["profile"], jupyter["output"]) == ("smoke", "smoke-custom")
    assert jupyter["params"]["n"] == 100 and jupyter["params"]["recipe"] == "smoke"
    assert jupyter["records"]
    for key in ("params", "records", "claims", "figures"):
        assert jupyter[key] == figure[key], key


def test_cli_takes_a_value_split_into_words_by_the_shell(project, fake_execute, fake_build, capsys):
    import shlex

    for words in ("-p items '[4, 5]' -p x 3", "-p items [4, 5] -p x 3"):  # make passes $(P) unquoted
        assert book.main(["figure", "aa_first", "--profile", "smoke", "--quiet", *shlex.split(words)]) == 0
        assert fake_execute[-1][1]["items"] == [4, 5] and fake_execute[-1][1]["x"] == 3
    assert book.main(["figure", "aa_first", "--profile", "smoke", "-p", "x", "null"]) == 2
    assert "expects int (default 1), got null" in capsys.readouterr().err


def test_prepare_page_hides_settings_cells_only():
    nb = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "# T"},
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "k = 3"},
        {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": "k = 5"},
        {"cell_type": "code", "metadata": {}, "source": ["sec = report.Section.from_notebook(", "'x', globals())"]},
        {"cell_type": "code", "metadata": {}, "source": "study = model_curves()"},
    ]}
    page = book.prepare_page(nb)
    assert [c["metadata"].get("tags") for c in page["cells"]] == [
        None, ["parameters", "remove-cell"], ["injected-parameters", "remove-cell"], ["hide-input"], None]
    assert nb["cells"][1]["metadata"]["tags"] == ["parameters"]  # the executed notebook is left as it is
    assert book.prepare_page(page) == page


def test_site_config_takes_the_repository_from_one_place():
    config = {"repository": {"url": "", "branch": "main"}, "launch_buttons": {"colab_url": "c"},
              "html": {"use_repository_button": True}}
    fixed = book.site_config({**config, "repository": {"url": "https://example.org/a/b"}}, {}, "git@x:y/z.git")
    assert fixed["repository"]["url"] == "https://example.org/a/b"
    ci = book.site_config(config, {"GITHUB_REPOSITORY": "o/modgraph", "GITHUB_SERVER_URL": "https://github.com"},
                          None)
    assert ci["repository"] == {"url": "https://github.com/o/modgraph", "branch": "main"}
    assert book.site_config(config, {}, "git@github.com:o/m.git")["repository"]["url"] == "https://github.com/o/m"
    for local in ("/work/main", "file:///srv/git/modgraph.git", "../modgraph"):  # a clone of a local repository
        assert "repository" not in book.site_config(config, {}, local)
    bare = book.site_config(config, {}, None)
    assert "repository" not in bare and "launch_buttons" not in bare and not any(bare["html"].values())
    assert config["repository"]["url"] == ""


def test_staging_writes_the_claims_page_and_publishes_results(project):
    toc = yaml.safe_load((project / "_toc.yml").read_text())
    toc["chapters"].insert(0, {"file": "claims"})
    (project / "_toc.yml").write_text(yaml.safe_dump(toc))
    figure = project / "results/smoke/figures/aa_first/fig1.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"png")
    claims = [{"claim": "rises", "quantity": "rho", "value": 0.9, "op": ">", "threshold": 0.5, "holds": True},
              {"claim": "flat", "quantity": "x", "value": None, "op": ">", "threshold": 0.0, "holds": False}]
    (project / "results/smoke/aa_first.json").write_text(json.dumps(
        {"profile": "smoke", "claims": claims, "figures": ["results/smoke/figures/aa_first/fig1.png"]}))
    for name in ("aa_first", "bb_second"):
        write_notebook(project / "results/smoke" / f"{name}.ipynb", name)
    index = book.build_html("smoke", {n: project / "results/smoke" / f"{n}.ipynb" for n in ("aa_first", "bb_second")},
                            progress=False)
    page = (project / "_build/smoke/src/claims.md").read_text()
    assert "## [aa\\_first](notebooks/aa_first.ipynb)" in page and 'data-total="2"' in page
    assert page.count("This chapter wrote no results file.") == 1  # bb_second
    html = index.parent
    assert (html / "claims.html").is_file()
    assert (html / "results/smoke/aa_first.json").is_file() and (html / "results/smoke/figures/aa_first/fig1.png")\
        .read_bytes() == b"png"
    staged = json.loads((project / "_build/smoke/src/notebooks/aa_first.ipynb").read_text())
    assert staged["cells"][1]["metadata"]["tags"] == ["parameters", "remove-cell"]


def test_build_says_how_long_the_missing_models_will_train(project, fake_execute, fake_build, monkeypatch, capsys):
    from modgraph import plan
    from modgraph.registry import Registry
    from modgraph.store import ModelSpec

    asked = []
    planners = Registry("notebook planner")
    for name in ("aa_first", "bb_second"):
        planners.register(name, lambda params, name=name: asked.append((name, params)) or
                          [ModelSpec("vgg11", "digits", recipe="smoke", width=0.0625)])
    monkeypatch.setattr(plan, "PLANNERS", planners)
    monkeypatch.setattr(plan, "training_rate", lambda spec: 10.0)  # 10 images/s
    book.run_book("smoke", progress=True)
    err = capsys.readouterr().err
    images, _, _ = plan._dataset_facts("digits")
    seconds = images * ModelSpec("vgg11", "digits", recipe="smoke").recipe_config().epochs / 10.0
    assert f"book: 1 model(s) to train, estimated {plan.format_duration(seconds)} on this machine" in err
    assert "make models PROFILE=smoke" in err and err.index("estimated") < err.index("aa_first: executing")
    assert [(name, params["x"]) for name, params in asked] == [("aa_first", 2), ("bb_second", 2)]
    asked.clear()
    book.run_book("smoke", progress=True)  # nothing stale: nothing executes, nothing is estimated
    assert "estimated" not in capsys.readouterr().err and asked == []
    book.run_figure("bb_second", {"x": 7}, "smoke", progress=True)  # the figure's own parameters are planned
    assert "estimated" in capsys.readouterr().err and [(n, p["x"]) for n, p in asked] == [("bb_second", 7)]
