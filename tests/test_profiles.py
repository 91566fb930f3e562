"""Profiles and notebook parameters: merging, checks, overrides, and the chapters' Jupyter parameters."""

import nbformat
import pytest
from conftest import write_params

from modgraph import paths, profiles


def test_params_merge_defaults_and_blocks(project):
    prof = profiles.get_profile("smoke")
    assert profiles.notebook_params(prof, "aa_first") == {"profile": "smoke", "output": "smoke", "x": 2}
    assert profiles.notebook_params(prof, "bb_second", output="smoke-custom") == {
        "profile": "smoke", "output": "smoke-custom", "x": 2, "items": [3]}


def test_unknown_profile_lists_valid_ones(project):
    with pytest.raises(ValueError, match=r"unknown profile 'nope'; valid choices: auto, gpu, smoke"):
        profiles.get_profile("nope")


def test_auto_profile_resolves_by_cuda(project, monkeypatch):
    write_params(project, "quick", {})
    write_params(project, "fast", {"profile": {"gpu": True}})
    assert profiles.get_profile("auto").name == "quick"
    monkeypatch.setattr(profiles, "cuda_available", lambda: True)
    assert profiles.get_profile("auto").name == "fast"


def test_parse_overrides_reads_yaml():
    assert profiles.parse_overrides([("k", "5"), ("archs", "[vgg11, resnet18]"), ("w", "0.5"), ("s", "abc")]) == {
        "k": 5, "archs": ["vgg11", "resnet18"], "w": 0.5, "s": "abc"}
    assert profiles.parse_overrides([("archs", "[vgg11,", "vgg16]"), ("k", "null")]) == {  # as a shell splits it
        "archs": ["vgg11", "vgg16"], "k": None}
    with pytest.raises(ValueError, match="a name and a value"):
        profiles.parse_overrides([("k",)])
    with pytest.raises(ValueError, match=r"malformed value for parameter 'archs': '\[vgg11'"):
        profiles.parse_overrides([("archs", "[vgg11")])
    with pytest.raises(ValueError, match="set by the book tool"):
        profiles.parse_overrides([("profile", "paper")])


def test_real_notebooks_check_snapshot_epochs_against_the_recipe():
    from modgraph.cache import check_snapshots

    curves = {"keep_snapshots": {"vgg16": 2}, "recipe": "smoke", "epochs": None}
    profiles.PARAMETER_CHECKS.get("01_curves")(curves)
    with pytest.raises(ValueError, match=r"int in 0..2 \(recipe 'smoke' trains 2 epochs\), got 30"):
        profiles.PARAMETER_CHECKS.get("01_curves")({**curves, "keep_snapshots": {"vgg16": 30}})
    with pytest.raises(ValueError, match="unknown model 'vgg6'"):
        profiles.PARAMETER_CHECKS.get("03_training")({**curves, "archs": ["vgg6"], "max_epoch": 1})
    assert check_snapshots({}, recipe="paper") == {}


def test_jupyter_parameters_load_the_profile_as_make_figure_does(project):
    cell = {"profile": "smoke", "output": None, "x": 1, "items": [1, 2]}
    namespace = dict(cell)
    profiles.jupyter_parameters("bb_second", namespace)
    expected = profiles.notebook_params(profiles.get_profile("smoke"), "bb_second", output="smoke-custom")
    assert {k: namespace[k] for k in cell} == expected == {"profile": "smoke", "output": "smoke-custom", "x": 2,
                                                           "items": [3]}
    namespace = dict(cell)
    profiles.jupyter_parameters("aa_first", namespace, items=[7])
    assert (namespace["x"], namespace["items"]) == (2, [7])
    profiles.jupyter_parameters("aa_first", namespace)  # rerun alone: from the cell's values again
    assert (namespace["output"], namespace["x"], namespace["items"]) == ("smoke-custom", 2, [1, 2])


def test_jupyter_parameters_leave_injected_parameters_alone(project):
    injected = {"profile": "smoke", "output": "smoke-custom", "x": 7, "items": [8]}
    namespace = dict(injected)
    profiles.jupyter_parameters("aa_first", namespace, x=9)
    assert namespace == injected


def test_jupyter_parameters_check_overrides(project):
    namespace = {"profile": "smoke", "output": None, "x": 1, "items": []}
    with pytest.raises(ValueError, match=r"overrides: notebook aa_first has no parameter 'k'; valid names: x, items"):
        profiles.jupyter_parameters("aa_first", namespace, k=5)
    with pytest.raises(ValueError, match="expects int"):
        profiles.jupyter_parameters("aa_first", namespace, x="two")
    with pytest.raises(ValueError, match=r"may not set \['output'\]"):
        profiles.jupyter_parameters("aa_first", namespace, output="mine")
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        profiles.jupyter_parameters("aa_first", {**namespace, "profile": "nope"})
    assert namespace["x"] == 1


def _parameters_default(nb, name: str):
    import ast

    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assignment = next(s for s in ast.parse(cell.source).body if s.targets[0].id == name)
    return ast.literal_eval(assignment.value)


@pytest.mark.parametrize("name", profiles.notebook_names())
def test_chapters_run_a_cpu_profile_in_jupyter_and_say_so(name):
    nb = nbformat.read(str(paths.notebooks_dir() / f"{name}.ipynb"), as_version=4)
    profile = _parameters_default(nb, "profile")
    assert not profiles.get_profile(profile).gpu and _parameters_default(nb, "output") is None
    top = [line for line in nb.cells[0].source.splitlines() if "In Jupyter" in line]
    assert len(top) == 1 and f"the `{profile}` profile" in top[0] and f"`results/{profile}-custom/`" in top[0]
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    loader = nb.cells[index + 1]
    assert "jupyter-parameters" in loader.metadata.get("tags", [])
    assert f'profiles.jupyter_parameters("{name}", globals())' in loader.source
    assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code")
