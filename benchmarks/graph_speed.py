"""Time one layer's graph step (similarity + k-NN + modularity): modgraph against a plain reference.

The reference does what the authors' code does: numpy cosine similarities,
row-by-row ``heapq.nlargest`` top-k, a networkx graph, and
``networkx.community.modularity``. Both run on the same random float32
features (10 classes, rectified like post-ReLU activations); the bare
float32 ``X @ X.T`` product is the floor modgraph is measured against. Every
time is the best of at least ``--repeats`` runs (more for fast cases). Prints a markdown table.

    python benchmarks/graph_speed.py                       # the default grid
    python benchmarks/graph_speed.py --n 500 2000 --d 65536 --reference-max-n 2000
    python benchmarks/graph_speed.py --memory 10000 65536  # peak extra memory of one layer
    python benchmarks/graph_speed.py --device cuda         # modgraph and the product on the GPU
"""

from __future__ import annotations

import argparse
import heapq
import multiprocessing
import resource
import time
from typing import Callable

import networkx as nx
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from modgraph import provenance
from modgraph.graph import knn_modularity
from modgraph.train import resolve_device

CLASSES = 10


def features(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Class-structured non-negative float32 features (n, d) and labels (n,), built in place."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(CLASSES, d, generator=gen)
    X = torch.randn(n, d, generator=gen)
    for c in range(CLASSES):
        X[c::CLASSES].add_(centres[c])
    return X.relu_(), np.arange(n) % CLASSES


def reference_modularity(X: np.ndarray, labels: np.ndarray, k: int) -> float:
    """k-NN modularity the plain way: numpy similarities, heapq per row, networkx."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Xn @ Xn.T
    n = len(S)
    weights: dict[tuple[int, int], float] = {}
    for i in range(n):
        row = S[i]
        for j in heapq.nlargest(k, (j for j in range(n) if j != i), key=row.__getitem__):
            edge = (min(i, j), max(i, j))
            weights[edge] = weights.get(edge, 0.0) + float(row[j]) / 2
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_weighted_edges_from((i, j, w) for (i, j), w in weights.items())
    communities = [set(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]
    return nx.community.modularity(graph, communities, weight="weight")


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def best_of(repeats: int, fn: Callable[[], object], clock: Callable[[], float],
            min_seconds: float = 2.0) -> tuple[float, object]:
    """Shortest time of at least ``repeats`` calls of ``fn`` (more while under ``min_seconds``), last result.

    Cheap cases get many runs, so that their minimum sees a quiet moment of a shared machine.
    """
    times, result = [], None
    while len(times) < repeats or (sum(times) < min_seconds and len(times) < 100 * repeats):
        start = clock()
        result = fn()
        times.append(clock() - start)
    return min(times), result


def run_case(n: int, d: int, k: int, repeats: int, reference: bool, clock: Callable[[], float],
             device: torch.device) -> dict[str, float]:
    """Times (s) of modgraph and the bare product on ``device``, and of the reference (NaN when skipped)."""
    X, labels = features(n, d)
    X_dev = X.to(device)

    def bare() -> None:
        X_dev @ X_dev.T
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t_mod, q_mod = best_of(repeats, lambda: knn_modularity(X_dev, labels, k=k), clock)
    t_bare, _ = best_of(repeats, bare, clock)
    t_ref, q_ref = (np.nan, np.nan)
    if reference:
        t_ref, q_ref = best_of(repeats, lambda: reference_modularity(X.numpy(), labels, k), clock)
    return {"mod": t_mod, "ref": t_ref, "bare": t_bare, "dq": abs(q_mod - q_ref), "q": q_mod}


def peak_memory(n: int, d: int, k: int, threads: int, queue: multiprocessing.Queue) -> None:
    """In a fresh process: peak resident memory beyond the features while computing one layer's Q."""
    torch.set_num_threads(threads)
    X, labels = features(n, d)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    knn_modularity(X, labels, k=k)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"features_gb": X.numel() * 4 / 1e9, "extra_gb": (after - before) / 1e6, "seconds": seconds})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[500, 2000, 5000], help="sample counts N")
    parser.add_argument("--d", type=int, nargs="+", default=[512, 4096, 65536], help="feature widths D")
    parser.add_argument("-k", type=int, default=3, help="neighbours per sample")
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing; the best is reported")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="threads for torch and for numpy's BLAS alike")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or process CPU time (steadier on a shared machine with --threads 1)")
    parser.add_argument("--reference-max-n", type=int, default=5000, help="skip the (slow) reference above this N")
    parser.add_argument("--max-elements", type=float, default=2000 * 65536,
                        help="skip cases with N * D above this (memory and time)")
    parser.add_argument("--device", default="cpu",
                        help="where modgraph and the bare product run (cpu, cuda, cuda:N); the reference runs on the CPU")
    parser.add_argument("--memory", type=int, nargs=2, metavar=("N", "D"),
                        help="only measure the peak extra memory of one layer of N x D features")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads, user_api="blas")
    hw = provenance.hardware()
    where = hw.get("gpu") if device.type == "cuda" else None
    print(f"<!-- {provenance.code_version()}; {hw['cpu']}, {hw['cpu_count']} CPUs, torch {hw['torch']} "
          f"with {hw['torch_threads']} threads, {f'modgraph on {where}, ' if where else ''}k={args.k}, "
          f"{args.clock} time, best of >= {args.repeats} runs -->")
    if args.memory:
        queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(
            target=peak_memory, args=(*args.memory, args.k, args.threads, queue)
        )
        child.start()
        result = queue.get()
        child.join()
        print(f"N={args.memory[0]} D={args.memory[1]}: features {result['features_gb']:.2f} GB, "
              f"peak extra {result['extra_gb']:.3f} GB, {result['seconds']:.1f} s")
        return 0
    print("| N | D | modgraph (ms) | reference (ms) | speedup | bare X @ X.T (ms) | modgraph / bare | abs(dQ) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for d in args.d:
        for n in args.n:
            if n * d > args.max_elements:
                continue
            r = run_case(n, d, args.k, args.repeats, reference=n <= args.reference_max_n, clock=CLOCKS[args.clock],
                         device=device)
            ref = "skipped" if np.isnan(r["ref"]) else f"{1e3 * r['ref']:.1f}"
            speedup = "" if np.isnan(r["ref"]) else f"{r['ref'] / r['mod']:.0f}x"
            dq = "" if np.isnan(r["dq"]) else f"{r['dq']:.1e}"
            print(f"| {n} | {d} | {1e3 * r['mod']:.1f} | {ref} | {speedup} | {1e3 * r['bare']:.1f} | "
                  f"{r['mod'] / r['bare']:.2f} | {dq} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
