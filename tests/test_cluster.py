"""A plan's models as submitit jobs on digits: debug and local executors, failures, a killed job, make test's record."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from modgraph import paths, plan
from modgraph.cluster import EXECUTORS, ClusterSettings, TrainJob, train_plan
from modgraph.plan import Plan, PlanItem
from modgraph.store import METRICS_FILE, REQUEST_LOG_ENV, ModelSpec, model_dir, spec_hash
from modgraph.train import RESUME_FILE

TINY = dict(arch="resnet20", dataset="digits", recipe="smoke", width=0.25, overrides={"depths": (1, 1, 1)})
UNFIT = ModelSpec("vgg11", "digits", recipe="smoke", width=0.125, overrides={"stages": ((8,),) * 6})
"""A model too deep for digits' 32x32 images: its job fails before training."""
REQUEST_LOG = "requests.jsonl"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A private project root sharing the checkout's notebooks and params; the store logs requests to REQUEST_LOG."""
    root = tmp_path_factory.mktemp("cluster")
    for name in ("notebooks", "params", "_toc.yml"):
        (root / name).symlink_to(paths.root() / name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODGRAPH_HOME", str(root))
        mp.setenv(REQUEST_LOG_ENV, str(root / REQUEST_LOG))
        yield root
    torch.set_num_threads(threads)


def _requests(root: Path) -> list[dict]:
    log = root / REQUEST_LOG
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _item(spec: ModelSpec, level: int = 0) -> PlanItem:
    parent = spec_hash(spec.parent) if spec.parent is not None else None
    return PlanItem(spec_hash(spec), spec.arch, spec, None, parent, level, ("test",), 0, 0, 1, False)


def _settings(executor: str) -> ClusterSettings:
    return ClusterSettings(executor=executor, device="cpu", poll_s=0.1)


def test_settings_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match="unknown executor 'pbs'; valid choices: " + ", ".join(EXECUTORS.names())):
        ClusterSettings(executor="pbs")
    for bad, message in [({"gpus_per_job": -1}, "gpus_per_job must be an int >= 0, got -1"),
                         ({"cpus_per_job": 1.5}, "cpus_per_job must be an int >= 1, got 1.5"),
                         ({"timeout_min": True}, "timeout_min must be an int >= 1, got True"),
                         ({"max_parallel": 0}, "max_parallel must be an int >= 1, got 0"),
                         ({"poll_s": 0}, "poll_s must be > 0, got 0")]:
        with pytest.raises(ValueError, match=message):
            ClusterSettings(**bad)
    with pytest.raises(ValueError, match="settings must be a ClusterSettings, got str"):
        train_plan(Plan("smoke", ()), "local")  # type: ignore[arg-type]


def test_a_job_imports_neither_the_plan_nor_the_book_nor_pandas():
    heavy = ("modgraph.plan", "modgraph.book", "modgraph.cache", "pandas")
    code = f"import sys, modgraph.cluster; print([m for m in {heavy!r} if m in sys.modules])"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]", "each job would spend seconds importing them"


@pytest.mark.slow
def test_the_smoke_plan_trains_parents_first_and_a_second_run_submits_nothing(project):
    full = plan.make_plan("smoke", resolve=False)
    vgg11 = next(item for item in full.items if item.spec is not None and item.spec.arch == "vgg11")
    variants = [item for item in full.items if item.parent == vgg11.key][:2]
    assert len(variants) == 2, "the smoke book fine-tunes VGG11 variants"
    subset = (vgg11, *variants)
    out = io.StringIO()
    report = train_plan(Plan("smoke", subset[::-1]), _settings("debug"), out=out)  # children listed first
    assert [row.item.key for row in report.rows] == [item.key for item in subset[::-1]]
    assert [row.state for row in report.rows] == ["done"] * 3 and not report.failed, out.getvalue()
    assert all(row.result["trained"] for row in report.rows), "a variant's job trained its parent"
    trained = [line["hash"] for line in _requests(project) if line["trained"]]
    assert trained[0] == vgg11.key and sorted(trained) == sorted(item.key for item in subset)
    again = plan.make_plan("smoke", resolve=False)
    assert {item.key for item in again.items if item.stored} == {item.key for item in subset}
    second = train_plan(Plan("smoke", tuple(i for i in again.items if i.stored)), _settings("debug"), out=out)
    assert second.submitted == 0 and second.summary().endswith("nothing to train")


@pytest.mark.parametrize("executor", ["debug", "local"])
def test_a_failed_job_is_reported_with_its_logs_and_its_child_skipped(project, executor):
    child = ModelSpec("vgg11", "digits", recipe="smoke", epochs=1, width=0.125, overrides=dict(UNFIT.overrides),
                      parent=UNFIT)
    report = train_plan(Plan("failing", (_item(UNFIT), _item(child, 1))), _settings(executor), out=None)
    failed, skipped = report.rows
    assert (failed.state, skipped.state, report.submitted) == ("failed", "skipped", 1)
    assert failed.error.startswith("ValueError: model 'vgg11' cannot take digits images of 32x32"), failed.error
    assert skipped.error == "its parent vgg11 failed" and skipped.job is None
    summary = report.summary()
    assert f"FAILED vgg11: {failed.error}" in summary and "SKIPPED vgg11: its parent vgg11 failed" in summary
    stdout, stderr = failed.logs()
    if executor == "debug":  # it ran in this process, printing here
        assert (stdout, stderr) == ("", "") and "logs:" not in summary
    else:
        assert f"logs: {stderr} {stdout}" in summary and stderr.startswith("data/jobs/failing/")
        assert "cannot take digits images" in (project / stderr).read_text()


@pytest.mark.slow
def test_a_killed_job_resumes_from_its_last_completed_epoch(project):
    spec = ModelSpec(**TINY, epochs=5, seed=3)
    folder, job_fn = model_dir(spec), TrainJob(paths.root(), "cpu")
    job = _settings("local").executor_for(paths.jobs_dir() / "killed" / "%j").submit(job_fn, spec)
    while not (folder / RESUME_FILE).exists():
        assert not job.done(), f"the job ended before its first epoch: {job.stderr()}"
        time.sleep(0.02)
    job.cancel()  # as a scheduler kills a job: SIGINT, a second later SIGKILL
    while not job.done():
        time.sleep(0.1)
    assert not (folder / METRICS_FILE).exists(), "the job finished before it was killed"
    killed = torch.load(folder / RESUME_FILE, weights_only=True)
    assert 1 <= killed["epoch"] < 5
    result = job_fn.checkpoint(spec).result()  # what submitit requeues after a preemption
    history = json.loads((folder / METRICS_FILE).read_text())["history"]
    assert result["trained"] and [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert history[:killed["epoch"]] == killed["history"], "completed epochs were trained again"


@pytest.mark.built
def test_after_make_models_the_smoke_book_trained_nothing():
    again = paths.build_dir() / "smoke-models-again.txt"
    log = paths.build_dir() / "smoke-requests.jsonl"
    missing = [paths.relative(path) for path in (again, log) if not path.exists()]
    if missing:
        pytest.fail(f"no {' or '.join(missing)}: make test writes them while training and building the smoke book")
    assert again.read_text().rstrip().endswith("nothing to train"), again.read_text()
    trained = [line for line in map(json.loads, log.read_text().splitlines()) if line["trained"]]
    assert not trained, f"the smoke book trained models after make models: {trained}"
