"""Time one layer's graph step (similarity + k-NN + modularity): modgraph against a plain reference.

The reference does what the authors' code does: numpy cosine similarities,
row-by-row ``heapq.nlargest`` top-k, a networkx graph, and
``networkx.community.modularity``. Both run on the same random float32
features (10 classes, rectified like post-ReLU activations); the bare
float32 ``X @ X.T`` product is the floor modgraph is measured against. Every
time is the best of ``--repeats`` runs. Prints a markdown table.

    python benchmarks/graph_speed.py                       # the default grid
    python benchmarks/graph_speed.py --n 500 2000 --d 65536 --reference-max-n 2000
    python benchmarks/graph_speed.py --memory 10000 65536  # peak extra memory of one layer
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

from modgraph import provenance
from modgraph.graph import knn_modularity

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


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    """Shortest wall time of ``repeats`` calls of ``fn`` and its last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def run_case(n: int, d: int, k: int, repeats: int, reference: bool) -> dict[str, float]:
    """Times (s) of modgraph, the reference (NaN when skipped) and the bare product for one (n, d)."""
    X, labels = features(n, d)
    t_mod, q_mod = best_of(repeats, lambda: knn_modularity(X, labels, k=k))
    t_bare, _ = best_of(repeats, lambda: X @ X.T)
    t_ref, q_ref = (np.nan, np.nan)
    if reference:
        t_ref, q_ref = best_of(repeats, lambda: reference_modularity(X.numpy(), labels, k))
    return {"mod": t_mod, "ref": t_ref, "bare": t_bare, "dq": abs(q_mod - q_ref), "q": q_mod}


def peak_memory(n: int, d: int, k: int, queue: multiprocessing.Queue) -> None:
    """In a fresh process: peak resident memory beyond the features while computing one layer's Q."""
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
    parser.add_argument("--reference-max-n", type=int, default=5000, help="skip the (slow) reference above this N")
    parser.add_argument("--max-elements", type=float, default=2000 * 65536,
                        help="skip cases with N * D above this (memory and time)")
    parser.add_argument("--memory", type=int, nargs=2, metavar=("N", "D"),
                        help="only measure the peak extra memory of one layer of N x D features")
    args = parser.parse_args(argv)
    hw = provenance.hardware()
    print(f"<!-- {provenance.code_version()}; {hw['cpu']}, {hw['cpu_count']} CPUs, torch {hw['torch']} "
          f"with {hw['torch_threads']} threads, k={args.k}, best of {args.repeats} -->")
    if args.memory:
        queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(target=peak_memory, args=(*args.memory, args.k, queue))
        child.start()
        result = queue.get()
        child.join()
        print(f"N={args.memory[0]} D={args.memory[1]}: features {result['features_gb']:.2f} GB, "
              f"peak extra {result['extra_gb']:.3f} GB, {result['seconds']:.1f} s")
        return 0
    print("| N | D | modgraph (s) | reference (s) | speedup | bare X @ X.T (s) | modgraph / bare | abs(dQ) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for d in args.d:
        for n in args.n:
            if n * d > args.max_elements:
                continue
            r = run_case(n, d, args.k, args.repeats, reference=n <= args.reference_max_n)
            ref = "skipped" if np.isnan(r["ref"]) else f"{r['ref']:.3f}"
            speedup = "" if np.isnan(r["ref"]) else f"{r['ref'] / r['mod']:.0f}x"
            dq = "" if np.isnan(r["dq"]) else f"{r['dq']:.1e}"
            print(f"| {n} | {d} | {r['mod']:.3f} | {ref} | {speedup} | {r['bare']:.3f} | "
                  f"{r['mod'] / r['bare']:.2f} | {dq} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
