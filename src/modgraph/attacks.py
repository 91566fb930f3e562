"""Adversarial examples from AdverTorch attacks, in pixel space.

Six AdverTorch 0.2.3 attacks are registered in :data:`ATTACKS` with the
library's default parameters (the paper used the defaults):

- ``fgsm``: ``GradientSignAttack``, eps=0.3
- ``pgd``: ``LinfPGDAttack``, eps=0.3, nb_iter=40, eps_iter=0.01, rand_init=True
- ``jsma``: ``JacobianSaliencyMapAttack``, theta=1.0, gamma=1.0
- ``cw``: ``CarliniWagnerL2Attack``, confidence=0, learning_rate=0.01,
  binary_search_steps=9, max_iterations=10000, abort_early=True, initial_const=0.001
- ``onepixel``: ``SinglePixelAttack``, max_pixels=100
- ``localsearch``: ``LocalSearchAttack``, p=1.0, r=1.5, d=5, t=5, k=1, round_ub=10,
  seed_ratio=0.1, max_nb_seeds=128

eps=0.3 is AdverTorch's (MNIST-sized) default, a large perturbation for
natural images; it is kept because the paper kept the defaults.

Fixed for every attack: ``clip_min=0``, ``clip_max=1``, untargeted, the
default loss, ``num_classes`` read from the model's output, and the
``comply_*`` flags off (they reseed NumPy's global generator). Every other
parameter can be changed with ``overrides`` (e.g. fewer CW iterations for a
smoke run); the values used are recorded in :attr:`AdversarialResult.params`.
:attr:`AttackSpec.released_code` holds the settings of the authors' released
script where they differ from the defaults: it ran CW with
``max_iterations=200``.

Pixel space. Attacks perturb and clip images in ``[0, 1]``; every modgraph
model normalises its input itself, so clipping keeps the adversarial images
valid images. The authors' released code fed *normalised* tensors to the
attacks with the same ``clip_min=0, clip_max=1``, which clips the normalised
values (and so the image) rather than the pixels; the numbers here are not
affected by that.

JSMA is a targeted attack in AdverTorch; here it targets the runner-up class
(the clean image's most likely wrong class), the cheapest target, and a
sample counts as a success when its prediction differs from the true label.
(The released script set ``targeted=False`` on JSMA and passed the true
labels; AdverTorch 0.2.3 then returns correctly classified images unchanged.)
Its memory grows as ``batch * (C*H*W)**2`` (pairs of input features), hence
its small default batch. AdverTorch draws random numbers (PGD's start, the
pixel searches) from PyTorch's global generator; they run inside
``torch.random.fork_rng`` seeded with ``seed``, so results repeat and the
caller's generator state is left untouched.

``onepixel`` runs ``BatchedSinglePixelAttack`` (:func:`batched_single_pixel_attack`), AdverTorch's
``SinglePixelAttack`` with its per-image search batched: AdverTorch predicts
the up to ``2 * max_pixels`` one-pixel candidates of an image one at a time;
here they go through the model in chunks, and the first successful candidate
in AdverTorch's order (same random pixel order, same seed) is returned. The
examples are AdverTorch's (up to floating-point differences between a batched
and a single-image forward pass), many times faster.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from modgraph import provenance
from modgraph.checks import finite_number, int_at_least
from modgraph.compat import advertorch_attacks
from modgraph.curve import CurveSettings
from modgraph.registry import Registry

__all__ = ["AttackSpec", "ATTACKS", "AdversarialSettings", "AdversarialResult", "adversarial_examples",
           "attack_params", "batched_single_pixel_attack"]

_PIXEL_RANGE = {"clip_min": 0.0, "clip_max": 1.0}


def _runner_up(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The most likely class other than ``labels``: ``(B, K), (B,) -> (B,)``."""
    masked = logits.clone()
    masked[torch.arange(len(labels)), labels] = -math.inf
    return masked.argmax(dim=1)


@dataclass(frozen=True)
class AttackSpec:
    """One registered attack: its AdverTorch class and tunable defaults.

    ``params`` are the overridable constructor arguments with AdverTorch's
    defaults; ``fixed`` are pinned; ``num_classes`` tells whether the class
    needs the number of classes; ``target`` maps ``(clean logits, labels)`` to
    the labels given to ``perturb`` (``None``: the true labels, untargeted);
    ``pixel_cap`` names a parameter capped at the image's pixel count;
    ``batch_size`` is the default batch; ``implementation`` (``None``: the
    AdverTorch class itself) returns the class that runs the attack, a
    drop-in subclass of the AdverTorch class with its constructor.
    """

    name: str
    advertorch_class: str
    params: Mapping[str, Any]
    fixed: Mapping[str, Any]
    description: str
    num_classes: bool = False
    target: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    pixel_cap: str | None = None
    batch_size: int = 100
    released_code: Mapping[str, Any] = field(default_factory=dict)
    implementation: Callable[[], type] | None = None

    def attack_class(self) -> type:
        """The class that runs this attack (AdverTorch's, or its drop-in :attr:`implementation`)."""
        return self.implementation() if self.implementation else getattr(advertorch_attacks(), self.advertorch_class)


_CANDIDATE_CHUNK = 64


@functools.cache
def batched_single_pixel_attack() -> type:
    """``BatchedSinglePixelAttack``: AdverTorch's ``SinglePixelAttack`` predicting an image's one-pixel candidates
    in chunks (see the module docstring); built on first use, since AdverTorch is imported only when needed."""

    class BatchedSinglePixelAttack(advertorch_attacks().SinglePixelAttack):
        def perturb_single(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            _, h, w = x.shape
            if self.comply_with_foolbox:
                np.random.seed(233333)
                order = torch.from_numpy(np.random.permutation(h * w))
            else:
                order = torch.randperm(h * w)
            pixels = order.to(x.device)[:self.max_pixels]
            rows, cols = (pixels % w).repeat_interleave(2), (pixels // w).repeat_interleave(2)
            values = torch.tensor([self.clip_min, self.clip_max], dtype=x.dtype, device=x.device).repeat(len(pixels))
            for start in range(0, len(rows), _CANDIDATE_CHUNK):
                part = slice(start, start + _CANDIDATE_CHUNK)
                batch = x.unsqueeze(0).repeat(len(rows[part]), 1, 1, 1)
                batch[torch.arange(len(batch)), :, rows[part], cols[part]] = values[part, None]
                labels = self._get_predicted_label(batch)
                hit = labels == int(y) if self.targeted else labels != int(y)
                if hit.any():
                    return batch[int(hit.nonzero()[0])]
            return x

    return BatchedSinglePixelAttack


ATTACKS: Registry[AttackSpec] = Registry("attack")

for _spec in (
    AttackSpec(
        "fgsm", "GradientSignAttack", {"eps": 0.3},
        {**_PIXEL_RANGE, "targeted": False, "loss_fn": None},
        "fast gradient sign method, one step of size eps (Goodfellow et al. 2015)",
    ),
    AttackSpec(
        "pgd", "LinfPGDAttack", {"eps": 0.3, "nb_iter": 40, "eps_iter": 0.01, "rand_init": True},
        {**_PIXEL_RANGE, "targeted": False, "loss_fn": None},
        "projected gradient descent in the Linf ball of radius eps (Madry et al. 2018)",
    ),
    AttackSpec(
        "jsma", "JacobianSaliencyMapAttack", {"theta": 1.0, "gamma": 1.0},
        {**_PIXEL_RANGE, "loss_fn": None, "comply_cleverhans": False},
        "Jacobian saliency map attack towards the runner-up class (Papernot et al. 2016)",
        num_classes=True, target=_runner_up, batch_size=4,
    ),
    AttackSpec(
        "cw", "CarliniWagnerL2Attack",
        {"confidence": 0.0, "learning_rate": 0.01, "binary_search_steps": 9,
         "max_iterations": 10000, "abort_early": True, "initial_const": 1e-3},
        {**_PIXEL_RANGE, "targeted": False, "loss_fn": None},
        "Carlini-Wagner L2 attack (Carlini & Wagner 2017)",
        num_classes=True, released_code={"max_iterations": 200},
    ),
    AttackSpec(
        "onepixel", "SinglePixelAttack", {"max_pixels": 100},
        {**_PIXEL_RANGE, "targeted": False, "loss_fn": None, "comply_with_foolbox": False},
        "sets single pixels to 0 or 1, up to max_pixels random pixels (Narodytska & Kasiviswanathan 2017)",
        pixel_cap="max_pixels", batch_size=10, implementation=batched_single_pixel_attack,
    ),
    AttackSpec(
        "localsearch", "LocalSearchAttack",
        {"p": 1.0, "r": 1.5, "d": 5, "t": 5, "k": 1, "round_ub": 10,
         "seed_ratio": 0.1, "max_nb_seeds": 128},
        {**_PIXEL_RANGE, "targeted": False, "loss_fn": None, "comply_with_foolbox": False},
        "greedy local search over pixel neighbourhoods (Narodytska & Kasiviswanathan 2017)",
        batch_size=10,
    ),
):
    ATTACKS.register(_spec.name, _spec)


def _coerce(attack: str, name: str, default: Any, value: Any) -> Any:
    """``value`` converted to the type of ``default``; ``ValueError`` if it does not fit."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{attack}: parameter {name!r} must be True or False, got {value!r}")
        return value
    finite_number(value, f"{attack}: parameter {name!r}")
    if isinstance(default, float):
        return float(value)
    if float(value) != int(value):
        raise ValueError(f"{attack}: parameter {name!r} must be an integer, got {value!r}")
    return int(value)


def attack_params(attack: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The tunable parameters of ``attack``: defaults updated with ``overrides``.

    Unknown parameter names raise ``ValueError`` listing the valid ones.
    """
    spec = ATTACKS.get(attack)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(spec.params))
    if unknown:
        raise ValueError(
            f"{spec.name}: unknown parameter(s) {', '.join(unknown)}; "
            f"valid choices: {', '.join(sorted(spec.params))}"
        )
    return {k: _coerce(spec.name, k, v, overrides.get(k, v)) for k, v in spec.params.items()}


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

    def config(self, attack: str) -> dict[str, Any]:
        """What makes the examples of ``attack`` (part of their cache key): name, resolved parameters, examples
        wanted, pool, seed and batch size."""
        return {"attack": ATTACKS.get(attack).name, "params": self.params(attack), "n": self.n_for(attack),
                "pool": self.pool, "seed": self.curve.seed, "batch_size": self.batch_size(attack)}

    def candidates(self, attack: str, n_test: int) -> np.ndarray:
        """Sorted indices of the ``min(n_test, pool * n_for(attack))`` test images offered to ``attack``, drawn
        with the curve's seed."""
        from modgraph.data import sample_indices

        return sample_indices(n_test, min(n_test, self.pool * self.n_for(attack)), 1, self.curve.seed)[0]

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


@dataclass(frozen=True, eq=False)
class AdversarialResult:
    """Successful adversarial examples of one attack and how they were made.

    ``images``, ``clean``: ``(n_found, C, H, W)`` in ``[0, 1]``; ``labels``
    (true), ``predictions`` (on ``images``) and ``indices`` (into the input):
    ``(n_found,)``. ``success_rate`` is successes / attacked (correctly
    classified inputs that were attacked); ``mean_l2`` and ``mean_linf`` are
    mean per-sample perturbation norms (``nan`` when nothing was found).
    """

    attack: str
    images: torch.Tensor
    clean: torch.Tensor
    labels: torch.Tensor
    predictions: torch.Tensor
    indices: torch.Tensor
    n_requested: int
    n_attacked: int
    success_rate: float
    mean_l2: float
    mean_linf: float
    wall_time_s: float
    params: dict[str, Any]
    seed: int
    code_version: str

    @property
    def n_found(self) -> int:
        """How many adversarial examples were kept."""
        return len(self.indices)

    def metrics(self) -> dict[str, Any]:
        """The scalar outcome: counts, success rate, norms, time."""
        return {
            "n_requested": self.n_requested, "n_found": self.n_found, "n_attacked": self.n_attacked,
            "success_rate": self.success_rate, "mean_l2": self.mean_l2,
            "mean_linf": self.mean_linf, "wall_time_s": self.wall_time_s,
        }

    def save(self, path: Path) -> None:
        """Atomically save tensors, parameters, metrics and code version (``torch.save``)."""
        provenance.atomic_torch_save(
            {
                "attack": self.attack, "params": self.params, "seed": self.seed,
                "code_version": self.code_version, "metrics": self.metrics(),
                "tensors": {k: getattr(self, k) for k in ("images", "clean", "labels", "predictions", "indices")},
            },
            Path(path),
        )

    @classmethod
    def load(cls, path: Path) -> AdversarialResult:
        """Read a result written by :meth:`save`."""
        blob = torch.load(Path(path), map_location="cpu", weights_only=False)
        m = blob["metrics"]
        return cls(
            attack=blob["attack"], **blob["tensors"], n_requested=m["n_requested"],
            n_attacked=m["n_attacked"], success_rate=m["success_rate"], mean_l2=m["mean_l2"],
            mean_linf=m["mean_linf"], wall_time_s=m["wall_time_s"], params=blob["params"],
            seed=blob["seed"], code_version=blob["code_version"],
        )


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Evaluation mode and no parameter gradients; every module's mode and flag restored afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for module, training in modes:
            module.training = training


def _check_inputs(images: torch.Tensor, labels: torch.Tensor, n: int, batch_size: int) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
    if not images.is_floating_point() or labels.is_floating_point():
        raise ValueError("images must be floating point and labels integer class indices")
    if len(images) and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"images must be in pixel space [0, 1] (models normalise internally), "
            f"got range [{float(images.min()):.3g}, {float(images.max()):.3g}]"
        )
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (n, batch_size)):
        raise ValueError(f"n and batch_size must be positive integers, got n={n!r}, batch_size={batch_size!r}")


def _batched_logits(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(images[i:i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)])


def adversarial_examples(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str,
    n: int,
    *,
    batch_size: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> AdversarialResult:
    """Up to ``n`` successful untargeted adversarial examples of ``attack``.

    ``images``: ``(N, C, H, W)`` in ``[0, 1]``; ``labels``: ``(N,)`` true
    classes. Correctly classified inputs are attacked in input order, in
    batches of ``batch_size`` (default: the attack's), until ``n`` succeed or
    the inputs run out; fewer than ``n`` gives a warning and a result with
    ``n_found < n_requested``. ``device`` defaults to the model's; a given
    device moves the model there. ``overrides`` change attack parameters (see
    :func:`attack_params`). Same ``seed``, same result.
    """
    spec = ATTACKS.get(attack)
    params = attack_params(spec.name, overrides)
    images = torch.as_tensor(images)
    labels = torch.as_tensor(labels)
    batch_size = spec.batch_size if batch_size is None else batch_size
    _check_inputs(images, labels, n, batch_size)
    images, labels = images.float().cpu(), labels.long().cpu()
    device = torch.device(next(model.parameters(), torch.empty(0)).device if device is None else device)
    model.to(device)
    if spec.pixel_cap:
        params[spec.pixel_cap] = min(params[spec.pixel_cap], images.shape[2] * images.shape[3])

    start = time.perf_counter()
    c, h, w = images.shape[1:]
    no_index = torch.empty(0, dtype=torch.long)
    kept = [(torch.empty(0, c, h, w), torch.empty(0, c, h, w), no_index, no_index, no_index)]
    n_attacked = n_success = 0
    with _frozen(model):
        logits = _batched_logits(model, images, batch_size, device)
        if len(labels) and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise ValueError(f"labels must be class indices in [0, {logits.shape[1]}), the model's output size")
        candidates = torch.nonzero(logits.argmax(dim=1) == labels).flatten()
        extra = {"num_classes": logits.shape[1]} if spec.num_classes else {}
        attacker = spec.attack_class()(model, **spec.fixed, **extra, **params)
        batches = [candidates[i:i + batch_size] for i in range(0, len(candidates), batch_size)]
        forked = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked), tqdm(
            total=len(batches), desc=spec.name, disable=not progress, leave=False
        ) as bar:
            torch.manual_seed(seed)
            for idx in batches:
                x, y = images[idx].to(device), labels[idx].to(device)
                target = y if spec.target is None else spec.target(logits[idx], labels[idx]).to(device)
                adv = attacker.perturb(x, target).detach()
                pred = _batched_logits(model, adv, batch_size, device).argmax(dim=1)
                ok = pred != labels[idx]
                n_attacked += len(idx)
                n_success += int(ok.sum())
                kept.append((adv.cpu()[ok], images[idx][ok], labels[idx][ok], pred[ok], idx[ok]))
                bar.update()
                if n_success >= n:
                    break
    wall = time.perf_counter() - start

    adv_images, clean, true, pred, index = (torch.cat(part)[:n] for part in zip(*kept))
    delta = (adv_images - clean).flatten(1)
    if len(index) < n:
        warnings.warn(
            f"{spec.name}: found {len(index)} of {n} requested adversarial examples "
            f"({n_attacked} correctly classified inputs attacked of {len(images)} given)",
            stacklevel=2,
        )
    return AdversarialResult(
        attack=spec.name, images=adv_images, clean=clean, labels=true, predictions=pred, indices=index,
        n_requested=n, n_attacked=n_attacked,
        success_rate=n_success / n_attacked if n_attacked else math.nan,
        mean_l2=float(delta.norm(dim=1).mean()) if len(index) else math.nan,
        mean_linf=float(delta.abs().amax(dim=1).mean()) if len(index) else math.nan,
        wall_time_s=wall, params=params, seed=seed, code_version=provenance.code_version(),
    )
