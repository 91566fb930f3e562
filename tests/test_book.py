"""The book tool on a tiny synthetic project: stamps, parameter checks, failures, GPU profiles, the CLI."""

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from modgraph import book

PARAMS_HEAD = "profile = 'smoke'\noutput = 'smoke'\n"
BODY = (
    "from pathlib import Path\n"
    "if x == 13:\n"
    "    raise RuntimeError('unlucky x')\n"
    "out = Path('results') / output / (NAME + '.txt')\n"
    "out.parent.mkdir(parents=True, exist_ok=True)\n"
    "out.write_text(f'{profile} {x} {items}')\n"
)


def write_notebook(path: Path, name: str, params: str = "x = 1\nitems = [1, 2]\n", body: str = BODY) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {name}"),
        nbformat.v4.new_code_cell(PARAMS_HEAD + params, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(f"NAME = {name!r}\n" + body),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def write_params(root: Path, profile: str, data: dict) -> None:
    (root / "params").mkdir(exist_ok=True)
    (root / "params" / f"{profile}.yml").write_text(yaml.safe_dump(data))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project root with notebooks aa_first and bb_second, profiles smoke and gpu (gpu: true)."""
    monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path))
    (tmp_path / "_config.yml").write_text("title: test\nexecute:\n  execute_notebooks: 'off'\n")
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump({
        "format": "jb-book", "root": "book/intro",
        "chapters": [{"file": "notebooks/aa_first"}, {"file": "notebooks/bb_second"}],
    }))
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    write_notebook(tmp_path / "notebooks" / "aa_first.ipynb", "aa_first")
    write_notebook(tmp_path / "notebooks" / "bb_second.ipynb", "bb_second")
    write_params(tmp_path, "smoke", {"profile": {"description": "tiny"}, "defaults": {"x": 2},
                                     "bb_second": {"items": [3]}})
    write_params(tmp_path, "gpu", {"profile": {"description": "needs CUDA", "gpu": True}, "defaults": {"x": 5}})
    monkeypatch.setattr(book, "_cuda_available", lambda: False)
    return tmp_path


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


def test_params_merge_defaults_and_blocks(project):
    prof = book.get_profile("smoke")
    assert book.notebook_params(prof, "aa_first") == {"profile": "smoke", "output": "smoke", "x": 2}
    assert book.notebook_params(prof, "bb_second", output="smoke-custom") == {
        "profile": "smoke", "output": "smoke-custom", "x": 2, "items": [3]}


def test_unknown_profile_lists_valid_ones(project):
    with pytest.raises(ValueError, match=r"unknown profile 'nope'; valid choices: auto, gpu, smoke"):
        book.get_profile("nope")


def test_auto_profile_resolves_by_cuda(project, monkeypatch):
    write_params(project, "quick", {})
    write_params(project, "fast", {"profile": {"gpu": True}})
    assert book.get_profile("auto").name == "quick"
    monkeypatch.setattr(book, "_cuda_available", lambda: True)
    assert book.get_profile("auto").name == "fast"


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


def test_parse_overrides_reads_yaml():
    assert book.parse_overrides([("k", "5"), ("archs", "[vgg11, resnet18]"), ("w", "0.5"), ("s", "abc")]) == {
        "k": 5, "archs": ["vgg11", "resnet18"], "w": 0.5, "s": "abc"}
    assert book.parse_overrides([("archs", "[vgg11,", "vgg16]"), ("k", "null")]) == {  # as a shell splits it
        "archs": ["vgg11", "vgg16"], "k": None}
    with pytest.raises(ValueError, match="a name and a value"):
        book.parse_overrides([("k",)])
    with pytest.raises(ValueError, match=r"malformed value for parameter 'archs': '\[vgg11'"):
        book.parse_overrides([("archs", "[vgg11")])
    with pytest.raises(ValueError, match="set by the book tool"):
        book.parse_overrides([("profile", "paper")])


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


def test_real_notebooks_check_snapshot_epochs_against_the_recipe():
    from modgraph.cache import check_snapshots

    curves = {"keep_snapshots": {"vgg16": 2}, "recipe": "smoke", "epochs": None}
    book.PARAMETER_CHECKS.get("01_curves")(curves)
    with pytest.raises(ValueError, match=r"int in 0..2 \(recipe 'smoke' trains 2 epochs\), got 30"):
        book.PARAMETER_CHECKS.get("01_curves")({**curves, "keep_snapshots": {"vgg16": 30}})
    with pytest.raises(ValueError, match="unknown model 'vgg6'"):
        book.PARAMETER_CHECKS.get("03_training")({**curves, "archs": ["vgg6"], "max_epoch": 1})
    assert check_snapshots({}, recipe="paper") == {}


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


def test_jupyter_parameters_load_the_profile_as_make_figure_does(project):
    cell = {"profile": "smoke", "output": None, "x": 1, "items": [1, 2]}
    namespace = dict(cell)
    book.jupyter_parameters("bb_second", namespace)
    expected = book.notebook_params(book.get_profile("smoke"), "bb_second", output="smoke-custom")
    assert {k: namespace[k] for k in cell} == expected == {"profile": "smoke", "output": "smoke-custom", "x": 2,
                                                           "items": [3]}
    namespace = dict(cell)
    book.jupyter_parameters("aa_first", namespace, items=[7])
    assert (namespace["x"], namespace["items"]) == (2, [7])
    book.jupyter_parameters("aa_first", namespace)  # rerun alone: from the cell's values again
    assert (namespace["output"], namespace["x"], namespace["items"]) == ("smoke-custom", 2, [1, 2])


def test_jupyter_parameters_leave_injected_parameters_alone(project):
    injected = {"profile": "smoke", "output": "smoke-custom", "x": 7, "items": [8]}
    namespace = dict(injected)
    book.jupyter_parameters("aa_first", namespace, x=9)
    assert namespace == injected


def test_jupyter_parameters_check_overrides(project):
    namespace = {"profile": "smoke", "output": None, "x": 1, "items": []}
    with pytest.raises(ValueError, match=r"overrides: notebook aa_first has no parameter 'k'; valid names: x, items"):
        book.jupyter_parameters("aa_first", namespace, k=5)
    with pytest.raises(ValueError, match="expects int"):
        book.jupyter_parameters("aa_first", namespace, x="two")
    with pytest.raises(ValueError, match=r"may not set \['output'\]"):
        book.jupyter_parameters("aa_first", namespace, output="mine")
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        book.jupyter_parameters("aa_first", {**namespace, "profile": "nope"})
    assert namespace["x"] == 1


def _parameters_default(nb, name: str):
    import ast

    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assignment = next(s for s in ast.parse(cell.source).body if s.targets[0].id == name)
    return ast.literal_eval(assignment.value)


@pytest.mark.parametrize("name", book.notebook_names())
def test_chapters_run_a_cpu_profile_in_jupyter_and_say_so(name):
    nb = nbformat.read(str(book.paths.notebooks_dir() / f"{name}.ipynb"), as_version=4)
    profile = _parameters_default(nb, "profile")
    assert not book.get_profile(profile).gpu and _parameters_default(nb, "output") is None
    top = [line for line in nb.cells[0].source.splitlines() if "In Jupyter" in line]
    assert len(top) == 1 and f"the `{profile}` profile" in top[0] and f"`results/{profile}-custom/`" in top[0]
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    loader = nb.cells[index + 1]
    assert "jupyter-parameters" in loader.metadata.get("tags", [])
    assert f'book.jupyter_parameters("{name}", globals())' in loader.source
    assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code")


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
