"""Modularity curves: the k-NN graph modularity of every layer of a model, over depth.

For each of ``repeats`` disjoint random sample sets of ``n`` images, every
layer's features give one modularity value (``modgraph.graph``); a ``Curve``
holds those values (repeats x layers) with their mean and sample standard
deviation per layer and the metadata needed to reproduce them. The model runs
once over the union of all samples, one layer (or group of layers) at a time,
and sweeps over ``n``, ``k`` and the similarity reuse that single pass.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Unpack

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from modgraph import provenance
from modgraph.checks import int_at_least
from modgraph.data import sample_indices
from modgraph.devices import resolve_device
from modgraph.features import Reading, iter_layer_features
from modgraph.selection import select_layers
from modgraph.graph import SIMILARITIES, graph_from_neighbours, modularity, nearest_neighbours, warn_if_tied
from modgraph.models import TAPS

__all__ = ["CurveSettings", "Curve", "sample_union", "check_inputs", "curve_from_features", "modularity_curve",
           "modularity_sweep", "sweep_axes"]

_RESERVED = (
    "n", "k", "similarity", "repeats", "seed", "tap", "device", "code_version", "hardware",
    "wall_time_s", "feature_time_s", "graph_time_s", "layer_selection", "tokens", "output_key",
)


@dataclass(frozen=True)
class CurveSettings:
    """How a modularity curve is measured: ``repeats`` disjoint sample sets of ``n`` images drawn with
    ``seed``, a ``k``-NN graph by ``similarity`` (a :data:`modgraph.graph.SIMILARITIES` name) of the
    features read at ``tap`` (a :data:`modgraph.models.TAPS` name). Checked on construction."""

    n: int = 500
    k: int = 3
    repeats: int = 5
    seed: int = 0
    similarity: str = "cosine"
    tap: str = "block"

    def __post_init__(self) -> None:
        for name, low in (("n", 1), ("k", 1), ("repeats", 1), ("seed", 0)):
            object.__setattr__(self, name, int_at_least(getattr(self, name), name, low))
        if self.k >= self.n:
            raise ValueError(f"k must satisfy 1 <= k < n, got k={self.k}, n={self.n}")
        for name, registry in (("similarity", SIMILARITIES), ("tap", TAPS)):
            registry.get(getattr(self, name))
            object.__setattr__(self, name, getattr(self, name).lower())

    def to_dict(self) -> dict[str, Any]:
        """``{"n", "k", "repeats", "seed", "similarity", "tap"}``: the settings' part of a cache key."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CurveSettings":
        """The settings among the entries of ``data`` (other entries are ignored; absent ones keep the defaults)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    @classmethod
    def of(cls, settings: "CurveSettings | None" = None, **given: Any) -> "CurveSettings":
        """``settings``, or settings built from the keyword values ``given`` that are not ``None``; not both."""
        given = {name: value for name, value in given.items() if value is not None}
        if settings is None:
            return cls(**given)
        if not isinstance(settings, CurveSettings):
            raise ValueError(f"settings must be a CurveSettings, got {type(settings).__name__}")
        if given:
            raise ValueError(f"give either settings or {', '.join(given)}, not both")
        return settings


@dataclass(frozen=True)
class Curve:
    """Modularity per layer and repeat.

    ``layers`` (L,) in depth order; ``values`` (repeats, L) as nested tuples
    (``array`` gives the numpy view); ``meta`` is JSON-like (model, dataset, n,
    k, repeats, similarity, seed, tap, code_version, wall_time_s, device, ...).
    """

    layers: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        layers = tuple(str(name) for name in self.layers)
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] != len(layers) or not layers:
            raise ValueError(
                f"values must be (repeats >= 1, L = {len(layers)} layers) with L >= 1, got shape {values.shape}"
            )
        if not np.isfinite(values).all():
            raise ValueError("curve values must be finite")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "values", tuple(tuple(float(v) for v in row) for row in values))
        object.__setattr__(self, "meta", json.loads(json.dumps(dict(self.meta), default=provenance._jsonable)))

    @property
    def array(self) -> np.ndarray:
        """The values as a (repeats, L) float64 array."""
        return np.array(self.values, dtype=np.float64)

    @property
    def repeats(self) -> int:
        """Number of repeats (sample sets)."""
        return len(self.values)

    @property
    def mean(self) -> np.ndarray:
        """Mean over repeats, (L,)."""
        return self.array.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        """Sample standard deviation over repeats (ddof=1), (L,); zeros for a single repeat."""
        return self.array.std(axis=0, ddof=1) if self.repeats > 1 else np.zeros(len(self.layers))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; ``mean`` and ``std`` are included for readers, ignored by ``from_dict``."""
        return {
            "layers": list(self.layers),
            "values": [list(row) for row in self.values],
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Curve:
        """The curve ``to_dict`` described."""
        missing = [key for key in ("layers", "values") if key not in data]
        if missing:
            raise ValueError(f"not a curve: missing {', '.join(missing)}")
        return cls(layers=tuple(data["layers"]), values=data["values"], meta=dict(data.get("meta", {})))

    def to_json(self, path: str | Path) -> None:
        """Write the curve to ``path`` atomically."""
        provenance.atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def from_json(cls, path: str | Path) -> Curve:
        """Read a curve written by ``to_json``; ``ValueError`` naming the file when it is not one."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read curve {path}: {err}") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"{path} is not a curve: it holds a JSON {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path} is not a valid curve: {err}") from None

    def recorded_model(self) -> dict[str, Any]:
        """The architecture, training data set and width the curve's ``meta`` records (``None`` where it does not).

        A store spec in ``meta["spec"]`` takes precedence; ``meta["dataset"]`` is
        the data the curve was measured on, used when no spec names the training set.
        """
        spec = self.meta.get("spec") if isinstance(self.meta.get("spec"), Mapping) else {}
        width = spec.get("width", self.meta.get("width"))
        return {"arch": spec.get("arch", self.meta.get("arch")),
                "dataset": spec.get("dataset", self.meta.get("dataset")),
                "width": None if width is None else float(width)}

    def check_model(self, arch: str, dataset: str, width: float) -> None:
        """``ValueError`` naming each of ``arch``, ``dataset``, ``width`` that differs from :meth:`recorded_model`."""
        wanted = {"arch": arch.lower(), "dataset": dataset.lower(), "width": float(width)}
        recorded = {key: value.lower() if isinstance(value, str) else value
                    for key, value in self.recorded_model().items()}
        bad = [f"{key} {recorded[key]!r}, not {value!r}" for key, value in wanted.items()
               if recorded[key] is not None and recorded[key] != value]
        if bad:
            raise ValueError(f"the curve describes another model: {'; '.join(bad)}")

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: depth, layer, mean, std, and ``q{r}`` for every repeat ``r``."""
        frame = pd.DataFrame({"depth": np.arange(1, len(self.layers) + 1), "layer": self.layers,
                              "mean": self.mean, "std": self.std})
        for r, row in enumerate(self.values):
            frame[f"q{r}"] = row
        return frame

    def table(self) -> str:
        """A printable table: a header line from ``meta``, then depth, layer, mean and std per layer."""
        m = self.meta
        head = f"modularity curve of {m.get('model', '?')}" + (f" on {m['dataset']}" if "dataset" in m else "")
        keys = ("n", "k", "repeats", "similarity", "tap", "seed")
        settings = ", ".join(f"{key}={m[key]}" for key in keys if key in m)
        body = self.to_frame()[["depth", "layer", "mean", "std"]].to_string(index=False, float_format="{:.4f}".format)
        return f"{head}" + (f" ({settings})" if settings else "") + "\n" + body


def sample_union(n_images: int, ns: Sequence[int], repeats: int, seed: int
                 ) -> tuple[np.ndarray, dict[int, list[np.ndarray]]]:
    """The sample sets of every ``n`` in ``ns`` and the images they use.

    Returns the sorted union (U,) of ``data.sample_indices(n_images, n,
    repeats, seed)`` over ``ns``, and ``n`` -> its ``repeats`` sets as rows of
    that union, so the model runs once over ``images[union]``.
    """
    sets_by_n = {n: sample_indices(n_images, n, repeats, seed) for n in ns}
    union = np.unique(np.concatenate([idx for sets in sets_by_n.values() for idx in sets]))
    return union, {n: [np.searchsorted(union, idx) for idx in sets] for n, sets in sets_by_n.items()}


def check_inputs(images: torch.Tensor, labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """``labels`` as a numpy array (N,), after checking that ``images`` is a (N, 3, H, W) tensor with one label each."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (N, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    return _labels(labels, images.shape[0])


def curve_from_features(
    features_by_layer: Iterable[tuple[str, torch.Tensor]] | Mapping[str, torch.Tensor],
    labels: torch.Tensor | np.ndarray,
    index_sets: Sequence[np.ndarray],
    k: int = 3,
    similarity: str = "cosine",
    meta: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Curve:
    """The curve of precomputed features: one Q per index set and layer.

    ``features_by_layer``: ``(name, (M, D))`` pairs in depth order (or a mapping);
    ``labels`` (M,); ``index_sets``: equally sized 1-D integer arrays of rows.
    """
    items = features_by_layer.items() if isinstance(features_by_layer, Mapping) else features_by_layer
    labels = _labels(labels, len(labels))
    sets = _index_sets(index_sets, len(labels))
    n = len(sets[0])
    layers, values, seconds = _sweep_layers(items, labels, {n: sets}, (k,), (similarity,), None, progress)
    info = {"n": n, "k": k, "repeats": len(sets), "similarity": similarity, "graph_time_s": seconds}
    return Curve(tuple(layers), np.array(values[(similarity, n, k)]).T, {**dict(meta or {}), **info})


def modularity_curve(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | np.ndarray,
    settings: CurveSettings | None = None,
    *,
    n: int | None = None,
    k: int | None = None,
    repeats: int | None = None,
    seed: int | None = None,
    similarity: str | None = None,
    tap: str | None = None,
    meta: Mapping[str, Any] | None = None,
    progress: bool = True,
    **reading: Unpack[Reading],
) -> Curve:
    """The modularity curve of ``model`` on ``repeats`` disjoint samples of ``n`` of ``images`` (N, 3, H, W).

    ``settings`` or the keywords ``n, k, repeats, seed, similarity, tap`` (those
    left out keep :class:`CurveSettings`' defaults). Samples come from
    ``data.sample_indices(N, n, repeats, seed)``; ``labels`` (N,) are the
    classes. ``reading`` (:class:`modgraph.features.Reading`: ``layers``,
    ``tokens``, ``output_key``, ``batch_size``, ``device``, ``max_bytes``)
    chooses and reads the layers (:func:`modgraph.features.iter_layer_features`;
    defaults: the model's own layers, its family's token choice). ``meta`` adds
    caller information (model, dataset, ...).
    """
    s = CurveSettings.of(settings, n=n, k=k, repeats=repeats, seed=seed, similarity=similarity, tap=tap)
    return modularity_sweep(model, images, labels, ns=(s.n,), ks=(s.k,), similarities=(s.similarity,),
                            repeats=s.repeats, seed=s.seed, tap=s.tap, meta=meta, progress=progress, **reading)[0]


def modularity_sweep(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | np.ndarray,
    settings: CurveSettings | None = None,
    *,
    ns: int | Sequence[int] | None = None,
    ks: int | Sequence[int] | None = None,
    similarities: str | Sequence[str] | None = None,
    repeats: int | None = None,
    seed: int | None = None,
    tap: str | None = None,
    meta: Mapping[str, Any] | None = None,
    progress: bool = True,
    **reading: Unpack[Reading],
) -> list[Curve]:
    """One curve per setting in ``itertools.product(similarities, ns, ks)``, in that order, from one feature pass.

    ``settings`` (or the keywords ``repeats``, ``seed``, ``tap``; not both)
    gives the samples and the layers; the axes ``ns``, ``ks`` and
    ``similarities`` default to its ``n``, ``k`` and ``similarity``. Each
    setting's samples are exactly those of ``modularity_curve`` with the
    same ``n``, ``repeats`` and ``seed``, so every curve equals the one
    ``modularity_curve`` gives; the k-NN lists are computed once for the largest
    ``k`` and cut for the smaller ones. ``meta`` times (``wall_time_s``,
    ``feature_time_s``, ``graph_time_s``) are those of the whole sweep. ``meta``
    records ``layer_selection`` when ``reading`` gives ``layers``, and ``tokens``
    and ``output_key`` when given; with the defaults the meta has none of them.
    """
    base = CurveSettings.of(settings, repeats=repeats, seed=seed, tap=tap)
    repeats, seed, tap = base.repeats, base.seed, base.tap
    ns, ks, similarities = sweep_axes(base, ns, ks, similarities)
    start = time.perf_counter()
    labels = check_inputs(images, labels)
    caller = dict(meta or {})
    clash = sorted(set(caller) & set(_RESERVED))
    if clash:
        raise ValueError(f"meta may not set {', '.join(clash)}: the curve records them itself")
    union, local = sample_union(images.shape[0], ns, repeats, seed)
    device = resolve_device(reading.get("device"))
    layers, tokens = reading.get("layers"), reading.get("tokens")
    recorded = {"layer_selection": None if layers is None else list(layers), "tokens": tokens,
                "output_key": reading.get("output_key")}
    n_layers = len(select_layers(model, layers, tap))
    stream = iter_layer_features(model, images[torch.from_numpy(union)], tap=tap, progress=progress,
                                 **{**reading, "device": device})
    names, values, seconds = _sweep_layers(stream, labels[union], local, ks, similarities, n_layers, progress)
    wall = time.perf_counter() - start
    common = {
        "model": type(model).__name__, **caller, **{key: value for key, value in recorded.items() if value is not None}, "repeats": repeats, "seed": seed, "tap": tap, "device": str(device),
        "code_version": provenance.code_version(), "hardware": provenance.hardware(), "wall_time_s": wall,
        "feature_time_s": wall - seconds, "graph_time_s": seconds,
    }
    return [
        Curve(tuple(names), np.array(values[key]).T, {**common, "n": key[1], "k": key[2], "similarity": key[0]})
        for key in itertools.product(similarities, ns, ks)
    ]


def _sweep_layers(
    stream: Iterable[tuple[str, torch.Tensor]],
    labels: torch.Tensor | np.ndarray,
    sets_by_n: Mapping[int, list[np.ndarray]],
    ks: Sequence[int],
    similarities: Sequence[str],
    n_layers: int | None,
    progress: bool,
) -> tuple[list[str], dict[tuple[str, int, int], list[list[float]]], float]:
    """Q for every layer of ``stream`` and every (similarity, n, k) setting and repeat.

    Returns layer names, ``{(similarity, n, k): [per layer: [per repeat: Q]]}``
    and the seconds spent on graphs (not waiting for features).
    """
    layers: list[str] = []
    values: dict[tuple[str, int, int], list[list[float]]] = {}
    seconds = 0.0
    for name, X in tqdm(stream, total=n_layers, desc="modularity", unit="layer", disable=not progress, leave=False):
        start = time.perf_counter()
        layers.append(name)
        if labels.shape[0] != X.shape[0]:
            raise ValueError(f"layer {name!r} has {X.shape[0]} rows but there are {labels.shape[0]} labels")
        for similarity, (n, sets) in itertools.product(similarities, sets_by_n.items()):
            lists = [nearest_neighbours(X[torch.as_tensor(idx, device=X.device)], max(ks), similarity) for idx in sets]
            for k in ks:
                if k < max(ks):
                    for _, sims in lists:
                        warn_if_tied(sims, k)
                q = [modularity(graph_from_neighbours(nb[:, :k], sims[:, :k]), labels[idx])
                     for (nb, sims), idx in zip(lists, sets)]
                values.setdefault((similarity, n, k), []).append(q)
        seconds += time.perf_counter() - start
    if not layers:
        raise ValueError("no layer features were given")
    return layers, values, seconds


def _index_sets(index_sets: Sequence[np.ndarray], n_rows: int) -> list[np.ndarray]:
    sets = [np.asarray(idx) for idx in index_sets]
    if not sets:
        raise ValueError("index_sets is empty: give at least one set of row indices")
    for idx in sets:
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"index sets must be 1-D integer arrays, got {idx.dtype} of shape {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= n_rows):
            raise ValueError(
                f"index sets must lie in [0, {n_rows}) (one row per label), got [{idx.min()}, {idx.max()}]"
            )
    sizes = sorted({len(idx) for idx in sets})
    if len(sizes) > 1:
        raise ValueError(f"index sets must all have the same size, got sizes {sizes}")
    return sets


def _labels(labels: torch.Tensor | np.ndarray, n_images: int) -> np.ndarray:
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.shape != (n_images,):
        raise ValueError(f"labels must have shape ({n_images},), one per image, got {array.shape}")
    return array


def sweep_axes(
    settings: CurveSettings,
    ns: int | Sequence[int] | None = None,
    ks: int | Sequence[int] | None = None,
    similarities: str | Sequence[str] | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...]]:
    """The axes of a sweep, checked (no model needed): ``ns``, ``ks`` and ``similarities`` without repeats, in the
    order given, each defaulting to the ``settings``' own value; ``ValueError`` for a k with no ``1 <= k < n``."""
    ns = _ints((settings.n,) if ns is None else ns, "ns")
    ks = _ints((settings.k,) if ks is None else ks, "ks")
    similarities = _names((settings.similarity,) if similarities is None else similarities)
    bad = [(n, k) for n in ns for k in ks if not 1 <= k < n]
    if bad:
        raise ValueError(f"every k must satisfy 1 <= k < n; invalid (n, k) settings: {bad}")
    return ns, ks, similarities


def _ints(values: int | Sequence[int], name: str) -> tuple[int, ...]:
    items = (values,) if isinstance(values, (int, np.integer)) else tuple(values)
    if not items or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items):
        raise ValueError(f"{name} must be a positive integer or a non-empty sequence of them, got {values!r}")
    return tuple(dict.fromkeys(int(v) for v in items))


def _names(similarities: str | Sequence[str]) -> tuple[str, ...]:
    items = (similarities,) if isinstance(similarities, str) else tuple(similarities)
    if not items:
        raise ValueError(f"similarities is empty; valid choices: {', '.join(SIMILARITIES.names())}")
    for name in items:
        SIMILARITIES.get(name)
    return tuple(dict.fromkeys(str(name).lower() for name in items))
