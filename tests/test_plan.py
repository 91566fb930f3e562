"""The plan of a profile: what its notebooks ask the model store for."""

from __future__ import annotations

import json

import pytest

from modgraph import book, paths, plan, store
from modgraph.store import ModelSpec, spec_hash


@pytest.fixture(scope="module")
def smoke_plan():
    return plan.make_plan("smoke", resolve=False)


def test_plan_lists_each_model_once_parents_before_children(smoke_plan):
    keys = [item.key for item in smoke_plan.items]
    assert len(keys) == len(set(keys)) and len(keys) > 3
    for i, item in enumerate(smoke_plan.items):
        if item.parent is not None:
            assert item.parent in keys[:i], f"{item.label} comes before its parent"
            assert item.level == smoke_plan.items[keys.index(item.parent)].level + 1
    assert any(item.parent for item in smoke_plan.items), "the smoke book fine-tunes variants"
    assert smoke_plan.total_macs == sum(item.macs * item.images * item.epochs for item in smoke_plan.items) > 0


def test_plan_follows_the_profile_parameters(smoke_plan):
    params = {**book.notebook_parameters("01_curves"), **book.notebook_params(book.get_profile("smoke"), "01_curves")}
    planned = {(item.spec.arch, item.spec.dataset) for item in smoke_plan.items
               if item.spec is not None and "01_curves" in item.notebooks}
    assert planned == {(arch, ds) for arch in params["archs"] for ds in params["datasets"]}


def test_unknown_profile_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match="smoke"):
        plan.make_plan("no-such-profile", resolve=False)


def test_request_log_records_every_request(tmp_path, monkeypatch):
    monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path))
    log = tmp_path / "requests.jsonl"
    monkeypatch.setenv(store.REQUEST_LOG_ENV, str(log))
    spec = ModelSpec("vgg11", "digits", recipe="smoke", epochs=1, width=0.125)
    store.get_model(spec, device="cpu", progress=False)
    store.get_model(spec, device="cpu", progress=False)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(line["hash"], line["trained"]) for line in lines] == [(spec_hash(spec), True), (spec_hash(spec), False)]


@pytest.mark.built
def test_the_built_smoke_book_asked_only_for_planned_models():
    log = paths.build_dir() / "smoke-requests.jsonl"
    if not log.exists():
        pytest.fail(f"no request log {paths.relative(log)}: make test writes it while building the smoke book")
    full = plan.make_plan("smoke", resolve=True)
    unplanned = [line for line in map(json.loads, log.read_text().splitlines())
                 if not full.covers(line["hash"], line["snapshot_epochs"])]
    assert not unplanned, f"the smoke book asked for models its plan does not list: {unplanned}"


def test_fig10_width_and_epochs_move_only_fig10_families():
    params = {**book.notebook_parameters("06_pruning"), **book.notebook_params(book.get_profile("smoke"), "06_pruning")}
    specs = {}
    for fig10_width, fig10_epochs in ((None, None), (0.5, 3)):
        requests = plan.PLANNERS.get("06_pruning")({**params, "fig10_width": fig10_width, "fig10_epochs": fig10_epochs})
        specs[fig10_width] = {r.arch: r for r in requests if isinstance(r, ModelSpec)}
    parents = {parent.lower() for parent in params["fig10_families"]}
    fig10 = parents | {v.lower() for variants in params["fig10_families"].values() for v in variants}
    assert fig10 and all(specs[None][m].width == params["width"] and specs[0.5][m].width == 0.5 for m in fig10)
    assert {specs[0.5][m].epochs for m in parents} == {3} and {specs[None][m].epochs for m in parents} == {None}
    assert {m: s for m, s in specs[0.5].items() if m not in fig10} == {
        m: s for m, s in specs[None].items() if m not in fig10}


def test_format_duration():
    assert [plan.format_duration(s) for s in (0, 42, 95, 3599, 8000, 7200)] == \
        ["0 s", "42 s", "1 min 35 s", "1 h 0 min", "2 h 13 min", "2 h 0 min"]
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite number >= 0"):
            plan.format_duration(bad)


def test_estimate_times_each_recipe_once_on_its_costliest_model_and_scales_by_cost(smoke_plan):
    timed = []

    def rate(spec):
        timed.append(spec)
        return 250.0

    todo = smoke_plan.missing()
    estimate = plan.estimate_training(smoke_plan, rate=rate)
    recipes = {(item.spec or item.derived.parent).recipe for item in todo}
    assert len(timed) == len(recipes) == len(estimate.rates) and set(estimate.seconds) == {i.key for i in todo}
    items = {item.key: item for item in todo}
    for recipe, key in estimate.timed.items():
        same = [i for i in todo if (i.spec or i.derived.parent).recipe == recipe]
        assert items[key].cost == max(i.cost for i in same)
        assert estimate.rates[recipe] == pytest.approx(250.0 * items[key].macs)
        for i in same:  # time proportional to cost: cost / (images/s x MACs per image of the timed model)
            assert estimate.seconds[i.key] == pytest.approx(i.cost / estimate.rates[recipe])
    assert estimate.total_s == pytest.approx(sum(estimate.seconds.values()))
    twice = plan.estimate_training(smoke_plan, rate=lambda spec: 500.0)
    assert twice.total_s == pytest.approx(estimate.total_s / 2)  # twice the speed, half the time
    assert "to train, estimated" in estimate.summary()
    with pytest.raises(ValueError, match="images/s > 0"):
        plan.estimate_training(smoke_plan, rate=lambda spec: 0.0)


def test_estimate_of_a_plan_with_nothing_missing_times_nothing(smoke_plan):
    from dataclasses import replace

    stored = replace(smoke_plan, items=tuple(replace(item, stored=True) for item in smoke_plan.items
                                             if item.spec is not None))
    estimate = plan.estimate_training(stored, rate=lambda spec: pytest.fail("timed a stored model"))
    assert estimate.seconds == {} and estimate.total_s == 0.0


def test_training_rate_times_a_real_step(single_thread):
    spec = ModelSpec("vgg11", "digits", recipe="smoke", width=0.0625)
    assert plan.training_rate(spec, steps=1, warmup=0, device="cpu") > 0


def test_plan_command_estimates_on_request(smoke_plan, tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    from modgraph.cli import main

    monkeypatch.setattr(plan, "training_rate", lambda spec: 100.0)
    monkeypatch.setattr(plan, "make_plan", lambda profile, resolve=True: smoke_plan)
    out = tmp_path / "plan.json"
    assert main(["plan", "--profile", "smoke", "--estimate", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "estimated time" in printed and "model(s) to train, estimated" in printed
    saved = json.loads(out.read_text())
    expected = plan.estimate_training(smoke_plan, rate=lambda spec: 100.0).total_s
    assert saved["estimated_training_s"] == pytest.approx(expected, abs=0.1) and expected > 0
    assert main(["plan", "--profile", "smoke"]) == 0
    assert "estimated time" not in capsys.readouterr().out  # only on request
    stored = replace(smoke_plan, items=tuple(replace(i, stored=True) for i in smoke_plan.items if i.spec is not None))
    monkeypatch.setattr(plan, "make_plan", lambda profile, resolve=True: stored)
    assert main(["plan", "--profile", "smoke", "--estimate"]) == 0
    assert "nothing to train" in capsys.readouterr().out
