"""The compute cache: expensive results stored as JSON, keyed by their configuration and code.

Results are cached under ``data/cache/<kind>/`` keyed by their configuration
and by :func:`modgraph.provenance.code_hash` of the code that computes them
(:func:`cached`; the book's stamps use the same key), so
re-executing a notebook after a plotting change takes seconds while a change
to the maths recomputes. On top of it, every chapter's measurements of a
weights source of the store (:mod:`modgraph.store`), keyed alike (the
source, data set, split, settings): curves (:func:`curve`), sweeps of curves
over n, k and similarity from one feature pass (:func:`sweep`), layer
comparisons with CKA (:func:`comparison`); the adversarial examples of a
stored model and their curves (:func:`adversarial`, :func:`attack_curves`);
t-SNE embeddings (:func:`cached_embeddings`); and the gathering of curves into
a :class:`CurveStudy` (:func:`model_curves`, :func:`pretrained_curves`, noting
what could not be measured: absent data sets or weights).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from modgraph import paths, provenance, site
from modgraph.claims import Claim
from modgraph.curve import Curve, CurveSettings

if TYPE_CHECKING:
    import torch

    from modgraph.attacks import AdversarialResult, AdversarialSettings
    from modgraph.cka import LayerComparison
    from modgraph.agreement import Agreement
    from modgraph.store import ModelSpec, WeightsSource

__all__ = [
    "jsonable",
    "entry_key",
    "cached",
    "CURVE_CODE",
    "COMPARISON_CODE",
    "ATTACK_CODE",
    "TSNE_CODE",
    "AGREEMENT_CODE",
    "curve",
    "sweep",
    "comparison",
    "agreement",
    "adversarial_key",
    "adversarial",
    "attack_curves",
    "CurveStudy",
    "check_snapshots",
    "trained_specs",
    "model_curves",
    "pretrained_curves",
    "Embeddings",
    "cached_embeddings",
]

_KIND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def jsonable(value: Any, what: str) -> Any:
    """``value`` round-tripped through JSON (NaN -> None); ``ValueError`` naming ``what`` if it cannot be."""
    try:
        text = json.dumps(value, default=provenance._jsonable, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} is not JSON serialisable: {err}") from None
    return json.loads(text, parse_constant=lambda _: None)


def _config_json(config: Mapping[str, Any]) -> dict:
    plain = {k: (asdict(v) if is_dataclass(v) and not isinstance(v, type) else v) for k, v in config.items()}
    return jsonable(plain, "cache config")


def entry_key(config: Mapping[str, Any], code: Sequence[str] = ()) -> str:
    """20 hex digits naming the cache entry of ``config`` (dataclasses become dicts) computed by ``code``
    (:func:`modgraph.provenance.code_hash`; no code: the config alone)."""
    blob = {"config": _config_json(config), "code": provenance.code_hash(code) if code else ""}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:20]


def cached(kind: str, config: Mapping[str, Any], compute: Callable[[], Any], *, code: Sequence[str] = ()) -> Any:
    """Load or compute-and-save a JSON-serialisable result.

    The cache file is ``data/cache/<kind>/<key>.json``, ``key`` being
    :func:`entry_key`: it hashes ``config`` and :func:`modgraph.provenance.code_hash`
    of the ``code`` modules (the source they import, the versions of torch,
    torchvision and numpy), so editing that code invalidates the entry. The file
    stores config, code version and value beside each other; an entry that
    cannot be read back with the config and code hash it is filed under
    (truncated, edited) is recomputed with a warning naming its path.
    """
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ValueError(f"cache kind must be a plain name like 'curves', got {kind!r}")
    plain = _config_json(config)
    code_key = provenance.code_hash(code) if code else ""
    path = paths.cache_dir() / kind / f"{entry_key(config, code)}.json"
    if path.is_file():
        try:
            entry = json.loads(path.read_text())
            if entry["config"] == plain and entry["code_hash"] == code_key:
                return entry["value"]
            problem = "its config or code hash is not the one it is filed under"
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
            problem = f"{type(err).__name__}: {err}"
        warnings.warn(f"cache entry {path} is unreadable or corrupted ({problem}); recomputing it", stacklevel=2)
    value = jsonable(compute(), f"cached {kind} value")
    provenance.atomic_write_json(path, {
        "kind": kind,
        "config": plain,
        "code": list(code),
        "code_hash": code_key,
        "code_version": provenance.code_version(),
        "value": value,
    })
    return value


CURVE_CODE = ("modgraph.curve", "modgraph.store")
"""The code of a modularity curve of a store's network (with all it imports: the cache key of :func:`curve`)."""

COMPARISON_CODE = ("modgraph.cka", "modgraph.store")
"""The code of a layer comparison (curve + CKA) of a store's network: the cache key of :func:`comparison`."""

ATTACK_CODE = ("modgraph.attacks", "modgraph.store")
"""The code of the adversarial examples of a stored model (drawing the candidates, attacking): part of their key."""

TSNE_CODE = ("modgraph.embeddings", "modgraph.store")
"""The code of the t-SNE embeddings of :func:`cached_embeddings` (with all it imports)."""

AGREEMENT_CODE = ("modgraph.agreement", "modgraph.store")
"""The code of the rank agreement of :func:`agreement` (with all it imports)."""


def _of_source(kind: str, source: "WeightsSource", config: Mapping[str, Any],
               measure: Callable[[Any, Any, Any, dict], Any], *, code: Sequence[str], dataset: str | None,
               split: str, device: str | None, progress: bool, meta: Mapping[str, Any] | None = None) -> Any:
    """The cached ``measure(model, images, labels, meta)`` (JSON-ready) of the network at ``source`` on ``split``.

    The entry is keyed by the source, data set, split, ``config`` and ``code``;
    ``meta`` holds model, data set and split, what the source records, then ``meta``.
    """
    from modgraph.data import load_dataset
    from modgraph.store import check_source, resolve

    check_source(source)
    dataset = dataset or source.dataset

    def compute() -> dict:
        weights = resolve(source, device=device, progress=progress)
        images, labels = load_dataset(dataset, split, progress=progress).tensors()
        info = {"model": source.arch, "dataset": dataset, "split": split, **weights.meta, **(meta or {})}
        return measure(weights.model, images, labels, info)

    entry = {"weights": source.key(), "dataset": dataset, "split": split, **config}
    return cached(kind, entry, compute, code=code)


def curve(
    source: "WeightsSource",
    settings: CurveSettings = CurveSettings(),
    *,
    dataset: str | None = None,
    split: str = "test",
    device: str | None = None,
    progress: bool = True,
) -> Curve:
    """The modularity curve of the network at the weights ``source`` names on ``dataset`` (default: the source's
    data set), cached: the one cached entry point for the curves of every chapter.

    Loads the curve from ``data/cache/curves/`` or resolves the weights
    (:func:`modgraph.store.resolve`: trains a stored model on first use),
    computes the curve with ``settings`` on ``split`` and saves it. ``meta``
    holds model, data set and split, and what the source records (a store
    spec, the test accuracy in %, a snapshot's epoch).
    """
    from modgraph.curve import modularity_curve

    def measure(model, images, labels, meta):
        return modularity_curve(model, images, labels, settings, device=device, meta=meta,
                                progress=progress).to_dict()

    return Curve.from_dict(_of_source("curves", source, settings.to_dict(), measure, code=CURVE_CODE,
                                      dataset=dataset, split=split, device=device, progress=progress))


def sweep(
    source: "WeightsSource",
    settings: CurveSettings = CurveSettings(),
    *,
    ns: Sequence[int] | None = None,
    ks: Sequence[int] | None = None,
    similarities: Sequence[str] | None = None,
    split: str = "test",
    device: str | None = None,
    progress: bool = True,
) -> list[Curve]:
    """:func:`modgraph.curve.modularity_sweep` (one feature pass) of the network at ``source`` on ``split`` of its
    data set, cached under ``data/cache/sweeps/``: one curve per ``(similarity, n, k)`` of the product of the axes
    (default: the settings' own value), in that order, each equal to :func:`curve` with those settings."""
    from modgraph.curve import modularity_sweep, sweep_axes

    axes = dict(zip(("ns", "ks", "similarities"), map(list, sweep_axes(settings, ns, ks, similarities))))
    shared = {"repeats": settings.repeats, "seed": settings.seed, "tap": settings.tap}

    def measure(model, images, labels, meta):
        return [c.to_dict() for c in modularity_sweep(model, images, labels, settings, **axes, device=device,
                                                      meta=meta, progress=progress)]

    value = _of_source("sweeps", source, {**shared, **axes}, measure, code=CURVE_CODE, dataset=None, split=split,
                       device=device, progress=progress)
    return [Curve.from_dict(c) for c in value]


def comparison(
    source: "WeightsSource",
    settings: CurveSettings = CurveSettings(),
    *,
    debiased: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> "LayerComparison":
    """:func:`modgraph.cka.compare_layers` (curve + CKA matrix, one feature pass) of the network at ``source``
    (e.g. :class:`modgraph.store.Trained` or :class:`modgraph.store.Initial`) on its data set's test split, cached
    under ``data/cache/cka/``; ``meta["weights"]`` is the source's kind."""
    from modgraph.cka import LayerComparison, compare_layers
    from modgraph.store import check_source

    kind = check_source(source).kind

    def measure(model, images, labels, meta):
        return compare_layers(model, images, labels, settings, debiased=debiased, device=device, meta=meta,
                              progress=progress).to_dict()

    value = _of_source("cka", source, {**settings.to_dict(), "debiased": debiased}, measure, code=COMPARISON_CODE,
                       dataset=None, split="test", device=device, progress=progress, meta={"weights": kind})
    return LayerComparison.from_dict(value)


def agreement(
    source: "WeightsSource",
    settings: CurveSettings = CurveSettings(),
    *,
    ranks: int,
    similarities: Sequence[str] = ("cosine",),
    device: str | None = None,
    progress: bool = True,
) -> "Agreement":
    """:func:`modgraph.agreement.layer_agreement` of the network at ``source`` on its data set's test split (the
    samples and layers of its curve with ``settings``), cached under ``data/cache/agreement/``."""
    from modgraph.agreement import Agreement, layer_agreement

    names = [s.lower() for s in similarities]

    def measure(model, images, labels, meta):
        return layer_agreement(model, images, labels, settings, ranks=ranks, similarities=names, device=device,
                               meta=meta, progress=progress).to_dict()

    value = _of_source("agreement", source, {**settings.to_dict(), "ranks": ranks, "similarities": names}, measure,
                       code=AGREEMENT_CODE, dataset=None, split="test", device=device, progress=progress)
    return Agreement.from_dict(value)


def _adversarial_config(spec: "ModelSpec", attack: str, settings: "AdversarialSettings") -> dict[str, Any]:
    from modgraph.store import spec_hash

    return {"spec": spec.canonical(), "spec_hash": spec_hash(spec), "split": "test", **settings.config(attack)}


def adversarial_key(spec: "ModelSpec", attack: str, settings: "AdversarialSettings") -> str:
    """20 hex digits naming the cached examples of ``attack`` on ``spec``'s model: :func:`entry_key` of the spec,
    :meth:`~modgraph.attacks.AdversarialSettings.config` of the attack and :data:`ATTACK_CODE`."""
    return entry_key(_adversarial_config(spec, attack, settings), ATTACK_CODE)


def adversarial(spec: "ModelSpec", attack: str, settings: "AdversarialSettings", *, device: str | None = None,
                progress: bool = True) -> "AdversarialResult":
    """Up to ``settings.n_for(attack)`` adversarial examples of ``attack`` against the stored model ``spec``, cached.

    The model comes from :func:`modgraph.store.get_model` (trained on first
    use); the inputs are :meth:`~modgraph.attacks.AdversarialSettings.candidates`
    of its data set's test split. The examples are saved under
    ``data/cache/adversarial/<key>.pt`` beside ``<key>.json`` (config, metrics,
    code version); the key (:func:`entry_key`) hashes the spec, the attack's
    configuration and :data:`ATTACK_CODE`, so a plotting change reuses them.
    The result's ``indices`` index the test split. An attack that finds fewer
    examples than wanted warns (also when read from the cache) and returns
    what it found (``n_found < n_requested``).
    """
    import torch

    from modgraph.attacks import ATTACKS, AdversarialResult, adversarial_examples
    from modgraph.data import load_dataset
    from modgraph.store import get_model

    config = _adversarial_config(spec, attack, settings)
    key = adversarial_key(spec, attack, settings)
    path = paths.cache_dir() / "adversarial" / f"{key}.pt"
    if path.is_file():
        try:
            result = AdversarialResult.load(path)
        except (OSError, RuntimeError, EOFError, KeyError, TypeError) as err:
            warnings.warn(f"unreadable cached adversarial examples {paths.relative(path)} "
                          f"({type(err).__name__}: {err}); recomputing", stacklevel=2)
        else:
            if result.n_found < result.n_requested:
                warnings.warn(f"{result.attack}: found {result.n_found} of {result.n_requested} requested "
                              f"adversarial examples ({result.n_attacked} inputs attacked; "
                              f"cached in {paths.relative(path)})", stacklevel=2)
            return result
    data = load_dataset(spec.dataset, "test", progress=progress)
    index = settings.candidates(attack, len(data))
    images, labels = data.subset(index).tensors()
    model = get_model(spec, device=device, progress=progress).model
    name = ATTACKS.get(attack).name
    result = adversarial_examples(model, images, labels, name, settings.n_for(name),
                                  batch_size=settings.batch_size(name), seed=settings.curve.seed,
                                  overrides=settings.overrides.get(name), progress=progress)
    result = replace(result, indices=torch.from_numpy(index)[result.indices])
    provenance.atomic_write_json(path.with_suffix(".json"), {
        "kind": "adversarial", "key": key, "config": config, "code": list(ATTACK_CODE),
        "metrics": result.metrics(), "code_version": result.code_version,
    })
    result.save(path)
    return result


def _tensor_sha(*tensors: "torch.Tensor") -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def attack_curves(spec: "ModelSpec", result: "AdversarialResult", settings: CurveSettings = CurveSettings(), *,
                  device: str | None = None, progress: bool = True) -> dict[str, Curve]:
    """Curves of ``result``'s adversarial images and of their clean originals through ``spec``'s model, cached.

    Both use all ``result.n_found`` images as one sample set, labelled by the
    true classes, and the graph settings (``k``, ``similarity``, ``tap``) of
    ``settings``; returns ``{"adversarial": Curve, "clean": Curve}``. The
    cache key hashes the images, so it follows the examples.
    """
    from modgraph.curve import modularity_curve
    from modgraph.store import get_model

    n, k = result.n_found, settings.k
    if n <= k:
        raise ValueError(f"{result.attack}: {n} adversarial example(s) cannot form a {k}-NN graph; need more than {k}")
    whole = replace(settings, n=n, repeats=1, seed=0)
    config = {"spec": spec.canonical(), "attack": result.attack,
              "images": _tensor_sha(result.images, result.clean, result.labels), **whole.to_dict()}

    def compute() -> dict:
        model = get_model(spec, device=device, progress=progress).model
        meta = {"model": spec.arch, "dataset": spec.dataset, "attack": result.attack}
        return {kind: modularity_curve(model, images, result.labels, whole, device=device,
                                       meta={**meta, "images": kind}, progress=progress).to_dict()
                for kind, images in (("adversarial", result.images), ("clean", result.clean))}

    value = cached("adversarial-curves", config, compute, code=CURVE_CODE)
    return {kind: Curve.from_dict(c) for kind, c in value.items()}


@dataclass(frozen=True)
class CurveStudy:
    """Modularity curves of several models per data set, and what could not be measured.

    ``datasets``: the requested data sets in order; ``curves``: data set ->
    model -> Curve; ``missing``: data set -> why it has no curves; ``skipped``:
    model -> why it was left out. Shows as a Markdown note.
    """

    datasets: tuple[str, ...]
    curves: dict[str, dict[str, "Curve"]]
    missing: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def _repr_markdown_(self) -> str:
        lines = [f"- **{ds}**: measured {', '.join(self.curves[ds])}" for ds in self.datasets if self.curves.get(ds)]
        notes = [site.admonition(f"{ds}: not measured", why) for ds, why in self.missing.items()]
        notes += [site.admonition(f"{model}: left out", why) for model, why in self.skipped.items()]
        return "\n\n".join(filter(None, ["\n".join(lines), *notes])) or "Nothing was requested."

    def panels(self) -> dict[str, Mapping[str, "Curve"] | str]:
        """Data set -> its curves, or why it has none (for :func:`modgraph.plots.curves.curve_grid`)."""
        return {ds: self.curves.get(ds) or self.missing.get(ds, "no curves were measured") for ds in self.datasets}

    def claims(self, *, source: str) -> list[Claim]:
        """:func:`modgraph.claims.curve_claims` per requested data set; an unmeasured one says why."""
        from modgraph.claims import curve_claims

        return [claim for ds in self.datasets
                for claim in curve_claims(self.curves.get(ds, {}), scope=ds, source=source,
                                          reason=self.missing.get(ds, ""))]

    def accuracy_table(self) -> pd.DataFrame:
        """Test accuracy (%) of every measured model beside the paper's Table B2 (quoted), all of it.

        One row per (data set, model) that was measured or that Table B2
        lists: ours is NaN where this run did not measure it, the paper's is
        NaN where Table B2 has no entry (a model that is not one of its nine).
        """
        from modgraph.paper import PAPER_TABLE_B2, quoted_accuracy

        rows = []
        for ds in dict.fromkeys([*self.curves, *PAPER_TABLE_B2]):
            measured = self.curves.get(ds, {})
            for model in dict.fromkeys([*PAPER_TABLE_B2.get(ds, {}), *measured]):
                curve, quoted = measured.get(model), quoted_accuracy(ds, model)
                rows.append({"data set": ds, "model": model,
                             "layers": len(curve.layers) if curve is not None else None,
                             "test accuracy (ours, %)": curve.meta.get("test_accuracy") if curve else float("nan"),
                             "paper (%)": float("nan") if quoted is None else quoted,
                             "paper source": "Table B2 (quoted)" if quoted is not None else ""})
        columns = ["data set", "model", "layers", "test accuracy (ours, %)", "paper (%)", "paper source"]
        return pd.DataFrame(rows, columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: curves as dicts, and the missing notes."""
        return {"datasets": list(self.datasets),
                "curves": {ds: {m: c.to_dict() for m, c in curves.items()} for ds, curves in self.curves.items()},
                "missing": dict(self.missing), "skipped": dict(self.skipped)}


def check_snapshots(snapshots: Mapping[str, int], *, recipe: str, epochs: int | None = None) -> dict[str, int]:
    """``snapshots`` (arch -> last snapshot epoch) as a dict, checked: known model names, ints in ``0..E``.

    ``E`` is the number of epochs ``recipe`` trains that architecture, or
    ``epochs`` (:meth:`~modgraph.train.Recipe.for_arch`); the book checks
    notebook parameters with it before running anything.
    """
    from modgraph.models import MODELS
    from modgraph.train import get_recipe

    if not isinstance(snapshots, Mapping):
        raise ValueError(f"snapshots must map architecture -> last snapshot epoch, got {snapshots!r}")
    base = get_recipe(recipe)
    for arch, last in snapshots.items():
        MODELS.get(arch)
        total = base.for_arch(arch, epochs).epochs
        if isinstance(last, bool) or not isinstance(last, int) or not 0 <= last <= total:
            raise ValueError(f"snapshots[{arch!r}] must be the last snapshot epoch, an int in 0..{total} (recipe "
                             f"{recipe!r} trains {total} epochs), got {last!r}")
    return dict(snapshots)


def trained_specs(archs: Sequence[str], dataset: str, *, recipe: str, width: float = 1.0, epochs: int | None = None,
                  seed: int = 0, snapshots: Mapping[str, int] | None = None) -> list["ModelSpec"]:
    """The store specs of ``archs`` trained on ``dataset``, as the studies request them (:mod:`modgraph.plan`).

    ``snapshots``: arch -> last snapshot epoch ``E`` kept (epochs ``0..E``); unchecked here.
    """
    from modgraph.store import ModelSpec

    return [ModelSpec(arch, dataset, recipe=recipe, epochs=epochs, seed=seed, width=width,
                      snapshot_epochs=range((snapshots or {}).get(arch, -1) + 1)) for arch in archs]


def model_curves(
    archs: Sequence[str],
    datasets: Sequence[str],
    settings: CurveSettings = CurveSettings(),
    *,
    recipe: str,
    width: float = 1.0,
    epochs: int | None = None,
    seed: int = 0,
    snapshots: Mapping[str, int] | None = None,
    device: str | None = None,
    progress: bool = True,
) -> CurveStudy:
    """Cached curves (:func:`curve` with ``settings``) of every ``arch`` trained by the store (training
    seed ``seed``) on every data set.

    ``snapshots``: arch -> last epoch ``E``; when the store trains that model
    here it keeps the snapshots of epochs ``0..E`` as well, so that a later
    request for them (Fig. 6(b)) reuses this run instead of training again.
    Entries for models not in ``archs`` are unused (a profile's list may serve
    a run restricted to fewer models); they are checked all the same
    (:func:`check_snapshots`).
    A data set whose files are absent is skipped with the loader's message in
    :attr:`CurveStudy.missing`; any other error propagates.
    """
    from modgraph.data import DatasetNotFoundError, load_dataset
    from modgraph.store import Trained

    snapshots = check_snapshots(snapshots or {}, recipe=recipe, epochs=epochs)
    curves: dict[str, dict[str, Curve]] = {}
    missing: dict[str, str] = {}
    jobs = [(ds, spec) for ds in datasets for spec in trained_specs(archs, ds, recipe=recipe, width=width,
                                                                    epochs=epochs, seed=seed, snapshots=snapshots)]
    for ds, spec in tqdm(jobs, desc="curves", disable=not progress):
        if ds in missing:
            continue
        try:
            load_dataset(ds, "test", progress=progress)
        except DatasetNotFoundError as err:
            missing[ds] = str(err)
            continue
        arch = spec.arch
        curves.setdefault(ds, {})[arch] = curve(Trained(spec), settings, device=device, progress=progress)
    return CurveStudy(tuple(datasets), curves, missing)


def pretrained_curves(
    archs: Sequence[str],
    dataset: str,
    settings: CurveSettings = CurveSettings(),
    *,
    weights_dir: str = "weights",
    device: str | None = None,
    progress: bool = True,
) -> CurveStudy:
    """Cached curves (``settings``) of pretrained models ``archs`` (e.g. ``tv_resnet18``) on ``dataset``.

    Weights are the state-dict files ``data/<weights_dir>/<arch>.pth``
    (nothing is downloaded). An absent data set or weights file is skipped
    and explained in :attr:`CurveStudy.missing`.
    """
    from modgraph.data import DatasetNotFoundError, load_dataset
    from modgraph.store import WeightsFile

    if not archs:
        return CurveStudy((dataset,), {}, {dataset: "no models were requested in this profile"})
    try:
        load_dataset(dataset, "test", progress=progress)
    except DatasetNotFoundError as err:
        return CurveStudy((dataset,), {}, {dataset: str(err)})
    curves: dict[str, Curve] = {}
    skipped: dict[str, str] = {}
    for arch in tqdm(archs, desc="pretrained curves", disable=not progress):
        weights = paths.data_dir() / weights_dir / f"{arch}.pth"
        if not weights.is_file():
            skipped[arch] = (f"no weights file {paths.relative(weights)}: save the torchvision state dict of "
                             f"{arch} there to include it")
            continue
        curves[arch] = curve(WeightsFile(arch, str(weights), dataset), settings, device=device, progress=progress)
    missing = {} if curves else {dataset: "no model weights were found (see below)"}
    return CurveStudy((dataset,), {dataset: curves} if curves else {}, missing, skipped)


@dataclass(frozen=True)
class Embeddings:
    """2-D t-SNE embeddings per layer (layer -> (N, 2)) of samples with ``labels`` (N,) of ``classes``."""

    layers: dict[str, np.ndarray]
    labels: np.ndarray
    classes: tuple[str, ...]


def cached_embeddings(
    spec: "ModelSpec",
    settings: CurveSettings = CurveSettings(),
    *,
    perplexity: float = 30.0,
    device: str | None = None,
    progress: bool = True,
) -> Embeddings:
    """t-SNE per layer (at ``settings.tap``) of ``settings.n`` test samples of ``spec.dataset`` through the
    stored model, cached.

    The samples are the first of the disjoint sets the curve with ``settings``
    uses (:func:`modgraph.data.sample_indices` with one repeat); the t-SNE is
    seeded with ``settings.seed``.
    """
    from modgraph.data import load_dataset, sample_indices
    from modgraph.embeddings import layer_embeddings
    from modgraph.store import get_model

    data = load_dataset(spec.dataset, "test", progress=progress)
    n, seed, tap = settings.n, settings.seed, settings.tap
    index = sample_indices(len(data), n, 1, seed)[0]
    config = {"model": spec.canonical(), "dataset": spec.dataset, "n": n, "seed": seed, "tap": tap,
              "perplexity": float(perplexity)}

    def compute() -> dict:
        model = get_model(spec, device=device, progress=progress).model
        images, _ = data.subset(index).tensors()
        emb = layer_embeddings(model, images, tap=tap, seed=seed, perplexity=perplexity, device=device,
                               progress=progress)
        return {name: e.tolist() for name, e in emb.items()}

    value = cached("tsne", config, compute, code=TSNE_CODE)
    return Embeddings({name: np.asarray(e, dtype=np.float32) for name, e in value.items()},
                      data.labels[index], data.classes)
