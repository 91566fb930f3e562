"""Fig. 6(a): adversarial examples of stored models, cached, and the modularity curves they give.

For every (model, attack) pair, :func:`cached_adversarial` offers ``pool``
test images per wanted example (a seeded random subset, in index order) to
:func:`modgraph.attacks.adversarial_examples`, which attacks the correctly
classified ones until ``n`` attacks succeed, and caches the result under
``data/cache/adversarial/<key>.pt`` beside ``<key>.json`` (config, metrics,
code version). The key (:func:`modgraph.cache.entry_key`, as for every cached
result) hashes the model's spec, the attack, its resolved parameters, ``n``,
``pool``, ``seed``, the batch size and the code that makes the examples, so a
plotting change reuses them and a change to the attack code recomputes them.

:func:`attack_curves` measures the modularity curve of the adversarial images
and of the clean images they came from, labelled by their true classes: one
sample set of all found examples each, so the two curves are a paired
comparison on the same images. :func:`adversarial_study` does this for every
pair and adds each model's clean curve on ``n`` random test samples
(:func:`modgraph.cache.curve`) as a reference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from modgraph import paths, provenance
from modgraph.attacks import ATTACKS, AdversarialResult, adversarial_examples, attack_params
from modgraph.checks import int_at_least
from modgraph.claims import Claim, check
from modgraph.curve import Curve, CurveSettings

if TYPE_CHECKING:
    from modgraph.store import ModelSpec

__all__ = [
    "ATTACK_CODE",
    "peak_gap",
    "AdversarialSettings",
    "adversarial_key",
    "cached_adversarial",
    "attack_curves",
    "AttackOutcome",
    "AdversarialStudy",
    "adversarial_study",
]

ATTACK_CODE = ("modgraph.sections.adversarial",)
"""The code of the adversarial examples of a stored model: this module, which draws the candidates, with all it
imports (the attacks, the store); part of their cache key."""


def peak_gap(adversarial: Sequence[float] | np.ndarray, clean: Sequence[float] | np.ndarray) -> float:
    """``max(adversarial) - max(clean)`` of two curves of Q over depth, both (L,): < 0 when the adversarial one peaks lower."""
    adv = np.asarray(adversarial, dtype=float)
    ref = np.asarray(clean, dtype=float)
    if adv.ndim != 1 or adv.shape != ref.shape or adv.size == 0:
        raise ValueError(f"peak_gap needs two non-empty 1-D curves of equal length, got {adv.shape} and {ref.shape}")
    return float(adv.max() - ref.max())


@dataclass(frozen=True)
class AdversarialSettings:
    """What Fig. 6(a) measures for each model.

    ``attacks``: :data:`modgraph.attacks.ATTACKS` names; ``curve``: the clean
    reference curve's settings, whose ``n`` is also the number of adversarial
    examples wanted per attack, whose ``k``, ``similarity`` and ``tap`` are
    every curve's graph settings and whose ``seed`` also draws the candidates
    and the attacks' random numbers; ``samples``: attack -> fewer examples for
    slow attacks; ``batches``: attack -> batch size (default: the attack's,
    capped at its number of examples; JSMA's pair search is cheapest one image
    at a time); ``pool``: test images offered per wanted example (``pool * n``
    candidates, at most the whole test split); ``overrides``: attack ->
    {parameter: value} (everything else keeps AdverTorch's defaults). Names
    and parameters are checked on construction.
    """

    attacks: tuple[str, ...] = ("fgsm", "pgd", "jsma", "cw", "onepixel", "localsearch")
    curve: CurveSettings = CurveSettings()
    samples: Mapping[str, int] = field(default_factory=dict)
    batches: Mapping[str, int] = field(default_factory=dict)
    pool: int = 4
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.attacks, str) or not self.attacks:
            raise ValueError(f"attacks must be a non-empty list of names; valid choices: {', '.join(ATTACKS.names())}")
        names = tuple(ATTACKS.get(a).name for a in self.attacks)
        if len(set(names)) != len(names):
            raise ValueError(f"attacks must not repeat, got {list(self.attacks)}")
        object.__setattr__(self, "attacks", names)
        if not isinstance(self.curve, CurveSettings):
            raise ValueError(f"curve must be a CurveSettings, got {type(self.curve).__name__}")
        object.__setattr__(self, "pool", int_at_least(self.pool, "pool"))
        samples = {a: int_at_least(v, f"samples[{a!r}]") for a, v in self._per_attack("samples").items()}
        object.__setattr__(self, "samples", samples)
        batches = {a: int_at_least(v, f"batches[{a!r}]") for a, v in self._per_attack("batches").items()}
        object.__setattr__(self, "batches", batches)
        overrides = self._per_attack("overrides")
        for name, params in overrides.items():
            if not isinstance(params, Mapping):
                raise ValueError(f"overrides of {name!r} must map parameter -> value, got {params!r}")
            attack_params(name, params)
        object.__setattr__(self, "overrides", {a: dict(p) for a, p in overrides.items()})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and flat: attacks, the curve settings, samples, batches, pool and overrides."""
        return {"attacks": list(self.attacks), **self.curve.to_dict(), "samples": dict(self.samples),
                "batches": dict(self.batches), "pool": self.pool, "overrides": self.overrides}

    def _per_attack(self, what: str) -> dict[str, Any]:
        """``self.<what>`` (attack -> value) with lower-cased keys; ``ValueError`` for attacks not requested."""
        value = getattr(self, what)
        if not isinstance(value, Mapping):
            raise ValueError(f"{what} must map attack name -> value, got {type(value).__name__}")
        out = {str(a).lower(): v for a, v in value.items()}
        extra = sorted(set(out) - set(self.attacks))
        if extra:
            raise ValueError(f"{what} names attacks that are not requested: {', '.join(extra)}; "
                             f"requested: {', '.join(self.attacks)}")
        return out

    def n_for(self, attack: str) -> int:
        """Adversarial examples wanted from ``attack``: ``samples[attack]``, else ``n``."""
        return self.samples.get(ATTACKS.get(attack).name, self.curve.n)

    def params(self, attack: str) -> dict[str, Any]:
        """The parameters ``attack`` runs with: AdverTorch's defaults updated with its overrides."""
        name = ATTACKS.get(attack).name
        return attack_params(name, self.overrides.get(name))

    def params_table(self) -> pd.DataFrame:
        """Per attack: AdverTorch class, examples wanted, batch size, parameters, and those changed from the defaults."""
        rows = []
        for name in self.attacks:
            spec, params = ATTACKS.get(name), self.params(name)
            changed = {k: v for k, v in params.items() if v != spec.params[k]}
            rows.append({"attack": name, "AdverTorch class": spec.advertorch_class, "samples": self.n_for(name),
                         "batch": self.batch_size(name), "parameters": _listing(params),
                         "changed from the defaults": _listing(changed)})
        return pd.DataFrame(rows, columns=["attack", "AdverTorch class", "samples", "batch", "parameters",
                                           "changed from the defaults"])

    def batch_size(self, attack: str) -> int:
        """``batches[attack]``, else the attack's default batch; capped at :meth:`n_for` so no more inputs
        are attacked than needed."""
        spec = ATTACKS.get(attack)
        return min(self.batches.get(spec.name, spec.batch_size), self.n_for(attack))


def _listing(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _candidates(n_test: int, wanted: int, pool: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(n_test, pool * wanted)`` test images drawn with ``seed``."""
    from modgraph.data import sample_indices

    return sample_indices(n_test, min(n_test, pool * wanted), 1, seed)[0]


def _config(spec: "ModelSpec", attack: str, settings: AdversarialSettings) -> dict[str, Any]:
    from modgraph.store import spec_hash

    return {
        "spec": spec.canonical(), "spec_hash": spec_hash(spec), "split": "test",
        "attack": ATTACKS.get(attack).name, "params": settings.params(attack), "n": settings.n_for(attack),
        "pool": settings.pool, "seed": settings.curve.seed, "batch_size": settings.batch_size(attack),
    }


def adversarial_key(spec: "ModelSpec", attack: str, settings: AdversarialSettings) -> str:
    """20 hex digits naming the cached examples of ``attack`` on ``spec``'s model under ``settings``.

    :func:`modgraph.cache.entry_key` of the model's spec, the attack's resolved
    parameters, the number of examples wanted, ``pool``, ``seed``, the batch
    size, and the code of :data:`ATTACK_CODE`.
    """
    from modgraph.cache import entry_key

    return entry_key(_config(spec, attack, settings), ATTACK_CODE)


def cached_adversarial(
    spec: "ModelSpec",
    attack: str,
    settings: AdversarialSettings,
    *,
    device: str | None = None,
    progress: bool = True,
) -> AdversarialResult:
    """Up to ``settings.n_for(attack)`` adversarial examples of ``attack`` against the stored model ``spec``, cached.

    The model comes from :func:`modgraph.store.get_model` (trained on first
    use); the inputs are ``settings.pool`` images per wanted example from its
    data set's test split, drawn with ``settings.curve.seed``. The result's
    ``indices`` index that test split. An attack that finds fewer examples
    than wanted warns (also when read from the cache) and returns what it
    found (``n_found < n_requested``).
    """
    from modgraph.data import load_dataset
    from modgraph.store import get_model

    key = adversarial_key(spec, attack, settings)
    path = paths.cache_dir() / "adversarial" / f"{key}.pt"
    if path.is_file():
        try:
            cached = AdversarialResult.load(path)
        except (OSError, RuntimeError, EOFError, KeyError, TypeError) as err:
            warnings.warn(f"unreadable cached adversarial examples {paths.relative(path)} "
                          f"({type(err).__name__}: {err}); recomputing", stacklevel=2)
        else:
            if cached.n_found < cached.n_requested:
                warnings.warn(f"{cached.attack}: found {cached.n_found} of {cached.n_requested} requested "
                              f"adversarial examples ({cached.n_attacked} inputs attacked; "
                              f"cached in {paths.relative(path)})",
                              stacklevel=2)
            return cached
    data = load_dataset(spec.dataset, "test", progress=progress)
    wanted = settings.n_for(attack)
    index = _candidates(len(data), wanted, settings.pool, settings.curve.seed)
    images, labels = data.subset(index).tensors()
    model = get_model(spec, device=device, progress=progress).model
    result = adversarial_examples(model, images, labels, attack, wanted, batch_size=settings.batch_size(attack),
                                  seed=settings.curve.seed, overrides=settings.overrides.get(ATTACKS.get(attack).name),
                                  progress=progress)
    result = dataclasses.replace(result, indices=torch.from_numpy(index)[result.indices])
    provenance.atomic_write_json(path.with_suffix(".json"), {
        "kind": "adversarial", "key": key, "config": _config(spec, attack, settings), "code": list(ATTACK_CODE),
        "metrics": result.metrics(), "code_version": result.code_version,
    })
    result.save(path)
    return result


def _tensor_sha(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def attack_curves(
    spec: "ModelSpec",
    result: AdversarialResult,
    settings: CurveSettings = CurveSettings(),
    *,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Curve]:
    """Curves of ``result``'s adversarial images and of their clean originals through ``spec``'s model, cached.

    Both use all ``result.n_found`` images as one sample set, labelled by the
    true classes, and the graph settings (``k``, ``similarity``, ``tap``) of ``settings``; returns ``{"adversarial": Curve, "clean": Curve}``. The cache
    key hashes the images, so it follows the examples.
    """
    from modgraph import cache
    from modgraph.curve import modularity_curve
    from modgraph.store import get_model

    n, k = result.n_found, settings.k
    if n <= k:
        raise ValueError(f"{result.attack}: {n} adversarial example(s) cannot form a {k}-NN graph; need more than {k}")
    whole = dataclasses.replace(settings, n=n, repeats=1, seed=0)
    config = {"spec": spec.canonical(), "attack": result.attack,
              "images": _tensor_sha(result.images, result.clean, result.labels), **whole.to_dict()}

    def compute() -> dict:
        model = get_model(spec, device=device, progress=progress).model
        meta = {"model": spec.arch, "dataset": spec.dataset, "attack": result.attack}
        return {kind: modularity_curve(model, images, result.labels, whole, device=device,
                                       meta={**meta, "images": kind}, progress=progress).to_dict()
                for kind, images in (("adversarial", result.images), ("clean", result.clean))}

    value = cache.cached("adversarial-curves", config, compute, code=cache.CURVE_CODE)
    return {kind: Curve.from_dict(curve) for kind, curve in value.items()}


@dataclass(frozen=True, eq=False)
class AttackOutcome:
    """One attack on one model: its examples and, when at least ``k + 1`` were found, both curves."""

    arch: str
    result: AdversarialResult
    adversarial: Curve | None
    clean: Curve | None

    @property
    def attack(self) -> str:
        """The attack's name."""
        return self.result.attack

    @property
    def shortfall(self) -> str:
        """``""`` when all requested examples were found, else e.g. ``"only 37 of 100 found"``."""
        r = self.result
        return "" if r.n_found >= r.n_requested else f"only {r.n_found} of {r.n_requested} found"

    @property
    def gap(self) -> float:
        """:func:`peak_gap` of the mean curves; NaN without curves."""
        if self.adversarial is None or self.clean is None:
            return math.nan
        return peak_gap(self.adversarial.mean, self.clean.mean)


@dataclass(frozen=True, eq=False)
class AdversarialStudy:
    """Outcomes of every (model, attack) pair, in request order, and each model's clean reference curve."""

    settings: AdversarialSettings
    outcomes: tuple[AttackOutcome, ...]
    references: dict[str, Curve]

    def results(self, arch: str) -> dict[str, AdversarialResult]:
        """Attack -> adversarial examples of model ``arch``."""
        if arch not in self.references:
            raise ValueError(f"unknown model {arch!r}; valid choices: {', '.join(self.references)}")
        return {o.attack: o.result for o in self.outcomes if o.arch == arch}

    def attack_table(self) -> pd.DataFrame:
        """Per (model, attack): requested, found, attacked, success rate (%), mean L2 and Linf, wall time (s)."""
        rows = [{
            "model": o.arch, "attack": o.attack, "requested": o.result.n_requested, "found": o.result.n_found,
            "attacked": o.result.n_attacked, "success rate (%)": round(100 * o.result.success_rate, 1),
            "mean L2": o.result.mean_l2, "mean Linf": o.result.mean_linf,
            "wall time (s)": round(o.result.wall_time_s, 1), "note": o.shortfall,
        } for o in self.outcomes]
        columns = ["model", "attack", "requested", "found", "attacked", "success rate (%)", "mean L2", "mean Linf",
                   "wall time (s)", "note"]
        return pd.DataFrame(rows, columns=columns)

    def peak_table(self) -> pd.DataFrame:
        """Per (model, attack): samples, max mean Q of the adversarial and the clean curve, their gap."""
        rows = []
        for o in self.outcomes:
            has = o.adversarial is not None and o.clean is not None
            rows.append({
                "model": o.arch, "attack": o.attack, "samples": o.result.n_found,
                "max Q adversarial": float(o.adversarial.mean.max()) if has else math.nan,
                "max Q clean (same images)": float(o.clean.mean.max()) if has else math.nan,
                "gap": o.gap, "note": o.shortfall,
            })
        columns = ["model", "attack", "samples", "max Q adversarial", "max Q clean (same images)", "gap", "note"]
        return pd.DataFrame(rows, columns=columns)

    def panels(self) -> dict[str, dict[str, Curve]]:
        """Model -> {"clean (test)": reference, attack: adversarial curve, ...} (for ``curve_grid``)."""
        out: dict[str, dict[str, Curve]] = {}
        for arch, ref in self.references.items():
            out[arch] = {f"clean ({self.settings.curve.n} test samples)": ref}
            out[arch].update({o.attack: o.adversarial for o in self.outcomes
                              if o.arch == arch and o.adversarial is not None})
        return out

    def pair_panels(self) -> dict[str, dict[str, Curve] | str]:
        """``"<model>, <attack>"`` -> {"adversarial": Curve, "clean (same images)": Curve}, or why there are none."""
        out: dict[str, dict[str, Curve] | str] = {}
        for o in self.outcomes:
            name = f"{o.arch}, {o.attack}" + (f" ({o.result.n_found} of {o.result.n_requested})" if o.shortfall else "")
            if o.adversarial is None or o.clean is None:
                out[name] = (f"{o.result.n_found} adversarial example(s) found; a {self.settings.curve.k}-NN graph "
                             f"needs more than {self.settings.curve.k}")
            else:
                out[name] = {"adversarial": o.adversarial, "clean (same images)": o.clean}
        return out

    def claims(self, *, source: str) -> list[Claim]:
        """Per (model, attack): "the adversarial curve peaks lower", max Q(adversarial) - max Q(clean) < 0.

        The quantity names how many samples the curves used when fewer than
        requested were found; with too few for a graph the claim is not measured.
        """
        out = []
        for o in self.outcomes:
            used = f"{o.result.n_found} samples" + (f", {o.shortfall}" if o.shortfall else "")
            reason = "" if o.adversarial is not None else (
                f"{o.result.n_found} adversarial example(s) found; a {self.settings.curve.k}-NN graph needs more than "
                f"{self.settings.curve.k}")
            out.append(check(
                f"{o.arch}, {o.attack}: the modularity curve of adversarial samples peaks lower than that of "
                "the clean samples",
                f"max mean Q (adversarial) - max mean Q (the same images, clean); {used}",
                None if reason else o.gap, "<", 0.0, source=source, reason=reason))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, per-pair metrics, parameters and curves, and the reference curves."""
        return {
            "settings": self.settings.to_dict(),
            "outcomes": [{
                "model": o.arch, "attack": o.attack, "params": o.result.params, **o.result.metrics(),
                "gap": o.gap, "adversarial": o.adversarial.to_dict() if o.adversarial else None,
                "clean": o.clean.to_dict() if o.clean else None,
            } for o in self.outcomes],
            "references": {arch: c.to_dict() for arch, c in self.references.items()},
        }


def adversarial_study(specs: Sequence["ModelSpec"], settings: AdversarialSettings, *, device: str | None = None,
                      progress: bool = True) -> AdversarialStudy:
    """Every attack of ``settings`` on every stored model of ``specs`` (:func:`modgraph.cache.trained_specs`),
    with curves.

    ``settings.curve.seed`` drives the attacks. Attack results and curves come
    from the caches; each model's clean reference curve is
    :func:`modgraph.cache.curve` on ``settings.curve.n`` test samples.
    """
    from modgraph.cache import curve
    from modgraph.store import Trained, check_specs

    if not isinstance(settings, AdversarialSettings):
        raise ValueError(f"settings must be an AdversarialSettings, got {type(settings).__name__}")
    specs = check_specs(specs)
    s = settings
    references = {spec.arch: curve(Trained(spec), s.curve, device=device, progress=progress)
                  for spec in specs}
    outcomes = []
    jobs = [(spec, attack) for spec in specs for attack in s.attacks]
    for spec, attack in tqdm(jobs, desc="attacks", disable=not progress):
        result = cached_adversarial(spec, attack, s, device=device, progress=progress)
        curves = (attack_curves(spec, result, s.curve, device=device, progress=progress)
                  if result.n_found > s.curve.k else {})
        outcomes.append(AttackOutcome(spec.arch, result, curves.get("adversarial"), curves.get("clean")))
    return AdversarialStudy(s, tuple(outcomes), references)
