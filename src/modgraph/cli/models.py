"""``python -m modgraph models``: train a book profile's missing models as submitit jobs (Slurm or local)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Train every model of `python -m modgraph plan --profile P` that the store does
not hold yet, as submitit jobs: --executor slurm (a job array per dependency
level on the cluster), local (processes on this machine) or debug (in this
process). Fine-tuned models start after their parent. Prints a progress table
and, at the end, every failure with its log files under data/jobs/. A job that
the scheduler preempts or that reaches --timeout-min is requeued and resumes
from its last completed epoch. Running it again submits only what is still
missing; afterwards `make book PROFILE=P` trains nothing.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``models`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser("models", help="train a profile's missing models as cluster jobs",
                                   description=DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--profile", required=True, help="book profile (params/<profile>.yml)")
    parser.add_argument("--executor", default="local", help="slurm, local or debug (submitit)")
    parser.add_argument("--partition", help="Slurm partition; default: the cluster's")
    parser.add_argument("--gpus-per-job", type=int,
                        help="GPUs per job; default: 1 on Slurm, this machine's (0 or 1) locally")
    parser.add_argument("--cpus-per-job", type=int, help="CPUs per job; default: the executor's")
    parser.add_argument("--timeout-min", type=int, default=24 * 60,
                        help="time limit of a job in minutes; it is then requeued and resumes")
    parser.add_argument("--max-parallel", type=int, help="jobs running at once; default: no limit on Slurm, 1 locally")
    parser.add_argument("--device", default="auto", help="where a job trains: auto (CUDA when it sees a GPU), cpu, cuda")
    parser.add_argument("--poll", type=float, default=10.0, help="seconds between progress checks")
    parser.set_defaults(func=run_models)
    return parser


def run_models(args: argparse.Namespace) -> int:
    """Plan, submit, report; exit code 1 when a model failed."""
    from modgraph.cluster import ClusterSettings, train_plan
    from modgraph.plan import make_plan

    settings = ClusterSettings(executor=args.executor, partition=args.partition, gpus_per_job=args.gpus_per_job,
                               cpus_per_job=args.cpus_per_job, timeout_min=args.timeout_min,
                               max_parallel=args.max_parallel, device=args.device, poll_s=args.poll)
    report = train_plan(make_plan(args.profile), settings)
    return 1 if report.failed else 0
