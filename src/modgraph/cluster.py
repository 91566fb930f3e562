"""Train a plan's missing models as submitit jobs: on Slurm, as local processes, or in this process (debug).

:func:`train_plan` submits the missing models of a :class:`modgraph.plan.Plan`
level by level (a fine-tuned model after its parent; one job array per
level, at most ``max_parallel`` at once), prints a progress table while they
run (queued / running / done / failed per model) and returns a
:class:`RunReport` naming each failure with its log files under
``data/jobs/``. Every job is :class:`TrainJob`, a submitit ``Checkpointable``:
when the scheduler preempts it or its time runs out, submitit requeues it
and the new run resumes from the model's last completed epoch (the store's
``resume.pt``). Jobs share the model store through its per-model lock
(:func:`modgraph.store.model_lock`), so a model requested twice (a second
``models`` run while the first is in the queue, a notebook) trains once.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TextIO

try:
    import submitit
    from submitit.core.utils import FailedJobError
except ImportError as err:  # an optional dependency: the `cluster` extra
    raise ImportError("modgraph.cluster needs submitit: pip install 'modgraph[cluster]' (make setup installs it)"
                      ) from err

from modgraph import paths
from modgraph.registry import Registry
from modgraph.store import ModelSpec, get_model, spec_hash

if TYPE_CHECKING:  # every job imports this module: the plan (the book, the caches) and pandas would add seconds
    import pandas as pd

    from modgraph.plan import Derived, Plan, PlanItem

__all__ = ["EXECUTORS", "ClusterSettings", "TrainJob", "JobRow", "RunReport", "train_plan"]

EXECUTORS: Registry[str] = Registry("executor")
"""``--executor`` name -> submitit cluster name."""
EXECUTORS.register("slurm", "slurm")
EXECUTORS.register("local", "local")
EXECUTORS.register("debug", "debug")

_STATES = {"PENDING": "queued", "QUEUED": "queued", "READY": "queued", "REQUEUED": "queued", "CONFIGURING": "queued",
           "RUNNING": "running", "COMPLETING": "running", "PREEMPTED": "queued"}


def _positive(value: Any, name: str, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


@dataclass(frozen=True)
class ClusterSettings:
    """Where and how the jobs run.

    ``executor``: an :data:`EXECUTORS` name; ``partition``: Slurm partition
    (``None``: the cluster's default); ``gpus_per_job`` (``None``: 1 on Slurm,
    this machine's CUDA devices, at most 1, otherwise); ``cpus_per_job``;
    ``timeout_min``: a job's time limit, after which it is requeued and
    resumes; ``max_parallel``: jobs running at once (``None``: no limit on
    Slurm, 1 locally); ``device``: where a job trains (``auto``: CUDA when the
    job sees a GPU); ``poll_s``: seconds between progress checks.
    """

    executor: str = "local"
    partition: str | None = None
    gpus_per_job: int | None = None
    cpus_per_job: int | None = None
    timeout_min: int = 24 * 60
    max_parallel: int | None = None
    device: str = "auto"
    poll_s: float = 10.0

    def __post_init__(self) -> None:
        EXECUTORS.get(self.executor)
        _positive(self.gpus_per_job, "gpus_per_job", allow_zero=True)
        _positive(self.cpus_per_job, "cpus_per_job")
        _positive(self.timeout_min, "timeout_min")
        _positive(self.max_parallel, "max_parallel")
        if not self.poll_s > 0:
            raise ValueError(f"poll_s must be > 0, got {self.poll_s!r}")

    def parallel(self) -> int | None:
        """Jobs at once: ``max_parallel``, else unlimited on Slurm and 1 elsewhere."""
        return self.max_parallel or (None if self.executor == "slurm" else 1)

    def executor_for(self, folder: Path) -> Any:
        """A configured ``submitit.AutoExecutor`` writing its files into ``folder``."""
        gpus = self.gpus_per_job
        if gpus is None:
            import torch

            gpus = 1 if self.executor == "slurm" else min(1, torch.cuda.device_count())
        executor = submitit.AutoExecutor(folder=folder, cluster=EXECUTORS.get(self.executor))
        params: dict[str, Any] = {"timeout_min": self.timeout_min, "gpus_per_node": gpus, "tasks_per_node": 1,
                                  "name": "modgraph"}
        if self.cpus_per_job is not None:
            params["cpus_per_task"] = self.cpus_per_job
        if self.executor == "slurm":
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.parallel():
                params["slurm_array_parallelism"] = self.parallel()
        executor.update_parameters(**params)
        return executor


class TrainJob(submitit.helpers.Checkpointable):
    """One job: train (or load) a spec, or resolve a :class:`Derived` request and train its spec.

    Checkpointable: submitit resubmits the same call when the job is
    preempted or times out, and the store resumes the model's training.

    ``home``: the project root the job's store lives in (``$MODGRAPH_HOME`` is
    set to it, so a job on another node uses the same store); ``device`` as
    for :func:`modgraph.store.get_model`. Returns what the report shows.
    """

    def __init__(self, home: str | Path, device: str = "auto") -> None:
        self.home = str(home)
        self.device = device

    def __call__(self, request: ModelSpec | Derived) -> dict[str, Any]:
        os.environ["MODGRAPH_HOME"] = self.home
        spec = request if isinstance(request, ModelSpec) else request.resolve(device=self.device, progress=False)
        if spec is None:
            return {"hash": None, "trained": False, "note": "nothing to train"}
        stored = get_model(spec, device=self.device, progress=True)
        return {"hash": spec_hash(spec), "trained": stored.trained, "path": paths.relative(stored.path),
                "final_test_acc": stored.metrics.get("final_test_acc"),
                "wall_time_s": stored.metrics.get("wall_time_s")}


@dataclass
class JobRow:
    """A model's job: ``state`` one of waiting / queued / running / done / failed / skipped."""

    item: PlanItem
    state: str = "waiting"
    job: Any = None
    result: dict[str, Any] | None = None
    error: str = ""

    @property
    def job_id(self) -> str:
        return "" if self.job is None else str(self.job.job_id)

    def logs(self) -> tuple[str, str]:
        """The job's stdout and stderr files (relative to the project root); none for a debug job (it prints here)."""
        if self.job is None or isinstance(self.job, submitit.DebugJob):
            return "", ""
        return paths.relative(self.job.paths.stdout), paths.relative(self.job.paths.stderr)


@dataclass
class RunReport:
    """What :func:`train_plan` did: one row per submitted (or skipped) model."""

    rows: list[JobRow] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def submitted(self) -> int:
        return sum(row.job is not None for row in self.rows)

    @property
    def failed(self) -> list[JobRow]:
        return [row for row in self.rows if row.state in ("failed", "skipped")]

    def table(self) -> pd.DataFrame:
        """Model, state, job id, log file, error."""
        import pandas as pd

        return pd.DataFrame([{"model": row.item.label, "state": row.state, "job": row.job_id,
                              "log": row.logs()[1], "error": row.error} for row in self.rows],
                            columns=["model", "state", "job", "log", "error"])

    def summary(self) -> str:
        counts = ", ".join(f"{n} {state}" for state, n in _counts(self.rows).items() if n)
        text = f"{self.submitted} job(s) in {self.seconds:.0f} s" + (f": {counts}" if counts else ": nothing to train")
        for row in self.failed:
            out, err = row.logs()
            text += f"\n  {row.state.upper()} {row.item.label}: {row.error}"
            text += f"\n    logs: {err} {out}" if err else ""
        return text


def _counts(rows: Sequence[JobRow]) -> dict[str, int]:
    states = ("waiting", "queued", "running", "done", "failed", "skipped")
    return {state: sum(row.state == state for row in rows) for state in states}


def _first_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


def _job_error(err: BaseException) -> str:
    """One line naming why a job failed: the job's own exception (the end of the trace submitit reports), else
    ``err`` (e.g. ``UncompletedJobError``: the job died without a result)."""
    if isinstance(err, FailedJobError):
        parts = str(err).split("-" * 22 + "\n")
        lines = parts[1].rstrip().splitlines() if len(parts) > 2 else []
        indented = [i for i, line in enumerate(lines) if line.startswith(" ")]
        raised = lines[indented[-1] + 1:] if indented else lines[-1:]
        if raised:
            return _first_line(" ".join(raised))
    return _first_line(f"{type(err).__name__}: {err}")


def _poll(row: JobRow) -> None:
    """Update ``row`` from its job; a debug job runs here, on the first poll."""
    job = row.job
    if row.state in ("done", "failed") or job is None:
        return
    try:
        if isinstance(job, submitit.DebugJob):
            job.submission().result()  # DebugJob.done() would run it too, but open pdb when it fails
        if not job.done():
            row.state = _STATES.get(str(job.state).split(" ")[0].upper(), "queued")
            return
        row.result = job.result()
        row.state = "done"
    except Exception as err:  # submitit re-raises the job's error (or UncompletedJobError) here
        row.state, row.error = "failed", _job_error(err)


def _show(rows: Sequence[JobRow], out: TextIO, changed: Sequence[JobRow]) -> None:
    for row in changed:
        print(f"  {row.state:<8} {row.item.label}" + (f"  (job {row.job_id})" if row.job_id else ""), file=out)
    counts = _counts(rows)
    print("  " + " | ".join(f"{state} {n}" for state, n in counts.items()), file=out, flush=True)


def _run_level(rows: list[JobRow], settings: ClusterSettings, folder: Path, out: TextIO | None,
               sleep: Callable[[float], None]) -> None:
    """Submit ``rows`` (at most ``parallel`` at a time outside Slurm), wait until all are done or failed."""
    executor = settings.executor_for(folder)
    job_fn = TrainJob(paths.root(), settings.device)
    chunk = len(rows) if settings.executor == "slurm" else (settings.parallel() or len(rows))
    for start in range(0, len(rows), chunk):
        batch = rows[start:start + chunk]
        jobs = executor.map_array(job_fn, [row.item.request for row in batch])
        for row, job in zip(batch, jobs):
            row.job, row.state = job, "queued"
        if out:
            _show(rows, out, batch)
        while True:
            before = [row.state for row in batch]
            for row in batch:
                _poll(row)
            changed = [row for row, state in zip(batch, before) if row.state != state]
            if changed and out:
                _show(rows, out, changed)
            if all(row.state in ("done", "failed") for row in batch):
                break
            sleep(settings.poll_s)


def train_plan(plan: Plan, settings: ClusterSettings, *, out: TextIO | None = sys.stdout,
               sleep: Callable[[float], None] = time.sleep) -> RunReport:
    """Train every missing model of ``plan`` with ``settings``, parents first; ``out=None``: quiet.

    A model whose parent failed is ``skipped``. Job files and logs go to
    ``data/jobs/<profile>/``. Raises nothing for a failed job: see
    :attr:`RunReport.failed`.
    """
    if not isinstance(settings, ClusterSettings):
        raise ValueError(f"settings must be a ClusterSettings, got {type(settings).__name__}")
    start = time.perf_counter()
    todo = plan.missing()
    rows = [JobRow(item) for item in todo]
    by_key = {row.item.key: row for row in rows}
    folder = paths.jobs_dir() / plan.profile / "%j"
    if out:
        print(f"{len(todo)} of {len(plan.items)} models to train with the {settings.executor} executor "
              f"(jobs and logs in {paths.relative(folder.parent)})", file=out, flush=True)
    for level in sorted({row.item.level for row in rows}):
        ready = []
        for row in (r for r in rows if r.item.level == level):
            parent = by_key.get(row.item.parent or "")
            if parent is not None and parent.state != "done":
                row.state, row.error = "skipped", f"its parent {parent.item.label} {parent.state}"
            else:
                ready.append(row)
        if ready:
            _run_level(ready, settings, folder, out, sleep)
    report = RunReport(rows, time.perf_counter() - start)
    if out:
        print(report.summary(), file=out, flush=True)
    return report
