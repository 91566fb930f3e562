"""What a book profile's notebooks will ask the model store for: the plan that ``python -m modgraph models`` trains.

Every notebook of ``_toc.yml`` has a planner in :data:`PLANNERS`: its
parameters, exactly as the book runs it (the template's defaults, then
``params/<profile>.yml``), -> the model requests of its cells, built by the
same library functions the study code builds them with
(:func:`modgraph.cache.trained_specs`,
:func:`modgraph.sections.pruning.family_specs`,
:class:`modgraph.sections.pruning.PruneSettings`). A model that a notebook
derives from a measured curve (Table 1's pruned model) is a :class:`Derived`
request: its spec is known once the parent is stored (:meth:`Derived.resolve`
measures the parent's curve through the same cache the notebook reads).

:func:`make_plan` merges the requests by spec hash (the union of their
snapshot epochs, as the store keeps them), adds every parent a fine-tuned
model starts from, and orders parents before children. Each entry carries its
cost, thop's multiply-accumulates of one forward pass x training images x
epochs (a training step costs about three forward passes more), and whether
the store holds it. ``$MODGRAPH_REQUEST_LOG`` (:data:`modgraph.store.REQUEST_LOG_ENV`)
records what a run really asked for; the tests check it against the plan.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from modgraph import profiles
from modgraph.curve import CurveSettings
from modgraph.registry import Registry
from modgraph.cache import trained_specs
from modgraph.sections import pruning
from modgraph.store import ModelSpec, spec_hash, stored_snapshots

__all__ = [
    "Derived",
    "DERIVATIONS",
    "PLANNERS",
    "KNOWN_DATASETS",
    "PlanItem",
    "Plan",
    "notebook_requests",
    "requests_of",
    "make_plan",
    "format_macs",
    "format_duration",
    "training_rate",
    "TrainingEstimate",
    "estimate_training",
]

DERIVATIONS: Registry[Callable[..., ModelSpec | None]] = Registry("derivation")
DERIVATIONS.register("pruned_by_curve", pruning.curve_pruned_spec)


@dataclass(frozen=True)
class Derived:
    """A model whose spec follows from its stored ``parent``: ``how`` (a :data:`DERIVATIONS` name) with ``settings``.

    ``epochs``: how long it trains (for the cost estimate before it is resolved).
    """

    how: str
    parent: ModelSpec
    settings: Any
    epochs: int

    def __post_init__(self) -> None:
        DERIVATIONS.get(self.how)

    @property
    def key(self) -> str:
        """``<how>:<parent hash>``: its name in a plan until resolved."""
        return f"{self.how}:{spec_hash(self.parent)}"

    def resolve(self, *, device: str | None = None, progress: bool = True) -> ModelSpec | None:
        """The spec (trains the parent and measures its curve if they are not stored); ``None``: no model."""
        return DERIVATIONS.get(self.how)(self.parent, self.settings, device=device, progress=progress)


Request = ModelSpec | Derived


def _training(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"recipe": p["recipe"], "width": p["width"], "epochs": p["epochs"], "seed": p["seed"]}


def _curves(p: Mapping[str, Any]) -> list[Request]:
    return [spec for ds in p["datasets"]
            for spec in trained_specs(p["archs"], ds, **_training(p), snapshots=p["keep_snapshots"])]


def _one_dataset(p: Mapping[str, Any]) -> list[Request]:
    return list(trained_specs(p["archs"], p["dataset"], **_training(p)))


def _training_dynamics(p: Mapping[str, Any]) -> list[Request]:
    snapshots = {arch: p["max_epoch"] for arch in p["archs"]}
    return list(trained_specs(p["archs"], p["dataset"], **_training(p), snapshots=snapshots))


def _transformers(p: Mapping[str, Any]) -> list[Request]:
    vit = {"recipe": p["vit_recipe"], "width": p["vit_width"], "epochs": p["vit_epochs"], "seed": p["seed"]}
    return [*trained_specs(p["archs"], p["dataset"], **_training(p)),
            *trained_specs([p["vit_arch"]], p["dataset"], **vit, snapshots={p["vit_arch"]: p["max_epoch"]})]


def _pruning(p: Mapping[str, Any]) -> list[Request]:
    settings = pruning.PruneSettings(recipe=p["recipe"], epochs=p["epochs"], finetune_epochs=p["finetune_epochs"],
                                     width=p["width"], seed=p["seed"], curve=CurveSettings.from_dict(p),
                                     threshold=p["threshold"])
    fig10 = settings.for_parents(p["fig10_width"], p["fig10_epochs"])
    out: list[Request] = []
    for families, datasets, at in ((p["fig9_families"], [p["dataset"]], settings),
                                   (p["fig10_families"], p["fig10_datasets"], fig10)):
        for ds in datasets:
            for parent, variants in families.items():
                out.extend(pruning.family_specs(parent, variants, ds, at).values())
    parent = settings.parent_spec(p["table1_arch"], p["dataset"], p["table1_width"])
    out.append(Derived("pruned_by_curve", parent, settings, settings.finetune_epochs))
    return out


PLANNERS: Registry[Callable[[Mapping[str, Any]], list[Request]]] = Registry("notebook planner")
"""Notebook -> its model requests from its parameters; mirrors the notebook's cells (see the module docstring)."""
PLANNERS.register("00_overview", lambda p: list(trained_specs([p["arch"]], p["dataset"], **_training(p))))
PLANNERS.register("01_curves", _curves)
PLANNERS.register("02_adversarial", _one_dataset)
PLANNERS.register("03_training", _training_dynamics)
PLANNERS.register("04_ablations", _one_dataset)
PLANNERS.register("05_cka", _one_dataset)
PLANNERS.register("06_pruning", _pruning)
PLANNERS.register("07_vit", _transformers)

KNOWN_DATASETS: dict[str, tuple[int, int, tuple[int, int]]] = {
    "cifar10": (50_000, 10, (32, 32)),
    "cifar100": (50_000, 100, (32, 32)),
}
"""Training images, classes and image size of the official releases, so a plan needs no download."""


def notebook_requests(profile: str) -> dict[str, list[Request]]:
    """Notebook -> its model requests under ``profile`` (every notebook of ``_toc.yml``, in book order)."""
    prof = profiles.get_profile(profile)
    out = {}
    for nb in profiles.notebook_names():
        if nb not in PLANNERS.names():
            raise ValueError(f"notebook {nb!r} has no planner: register one in modgraph.plan.PLANNERS "
                             f"(planned notebooks: {', '.join(PLANNERS.names())})")
        out[nb] = requests_of(nb, profiles.notebook_params(prof, nb))
    return out


def requests_of(notebook: str, params: Mapping[str, Any]) -> list[Request]:
    """The model requests of ``notebook`` run with ``params`` (its template's defaults fill in the rest)."""
    return PLANNERS.get(notebook)({**profiles.notebook_parameters(notebook), **params})


@functools.lru_cache(maxsize=None)
def _dataset_facts(dataset: str) -> tuple[int, int, tuple[int, int]]:
    if dataset in KNOWN_DATASETS:
        return KNOWN_DATASETS[dataset]
    from modgraph.data import load_dataset

    train = load_dataset(dataset, "train", progress=False)
    return len(train), train.num_classes, train.image_size


@functools.lru_cache(maxsize=None)
def _macs(arch: str, dataset: str, width: float, overrides: tuple[tuple[str, Any], ...]) -> int:
    from modgraph.models import create_model
    from modgraph.prune import complexity

    _, classes, (h, w) = _dataset_facts(dataset)
    model = create_model(arch, num_classes=classes, width=width, seed=0, **dict(overrides))
    return complexity(model, (1, 3, h, w)).macs


@dataclass(frozen=True)
class PlanItem:
    """One model of a plan.

    ``key``: the spec hash (``<how>:<parent hash>`` for an unresolved
    :class:`Derived`); ``spec``: ``None`` while derived and unresolved (or when
    its derivation yields no model: ``note`` says why); ``parent``: the key of
    the item it is fine-tuned from; ``level``: 0 for a model trained from
    scratch, parent's + 1 otherwise; ``macs``: thop multiply-accumulates of one
    forward pass of one image (the parent's for an unresolved derived model:
    an upper bound).
    """

    key: str
    label: str
    spec: ModelSpec | None
    derived: Derived | None
    parent: str | None
    level: int
    notebooks: tuple[str, ...]
    macs: int
    images: int
    epochs: int
    stored: bool
    note: str = ""

    @property
    def cost(self) -> int:
        """Multiply-accumulates of training: ``macs x images x epochs``."""
        return self.macs * self.images * self.epochs

    @property
    def request(self) -> Request | None:
        """What a worker gets: the spec, else the derivation (``None`` when there is nothing to train)."""
        if self.spec is not None:
            return self.spec
        return self.derived if not self.note else None


def format_macs(value: float) -> str:
    """``3.2e15`` -> ``"3.20 P"`` (SI prefix of multiply-accumulates)."""
    for factor, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.2f} {prefix}"
    return f"{value:.0f} "


@dataclass(frozen=True)
class Plan:
    """The models of a profile in dependency order (parents first)."""

    profile: str
    items: tuple[PlanItem, ...]

    def missing(self) -> list[PlanItem]:
        """Items the store does not hold yet that something can train."""
        return [item for item in self.items if not item.stored and item.request is not None]

    @property
    def total_macs(self) -> int:
        """Estimated multiply-accumulates of training every model of the plan."""
        return sum(item.cost for item in self.items)

    def covers(self, spec_hash_: str, snapshot_epochs: Sequence[int]) -> bool:
        """Whether the plan lists the spec of hash ``spec_hash_`` with at least these snapshots."""
        return any(item.key == spec_hash_ and set(snapshot_epochs) <= set(item.spec.snapshot_epochs)
                   for item in self.items if item.spec is not None)

    def table(self) -> pd.DataFrame:
        """One row per model: order, key, model, snapshots, epochs, cost, stored, notebooks."""
        rows = [{"#": i + 1, "key": item.key, "model": item.label, "level": item.level,
                 "snapshots": _epochs_text(item.spec.snapshot_epochs) if item.spec else "",
                 "epochs": item.epochs, "MACs/image": format_macs(item.macs),
                 "train MACs": ("<= " if item.spec is None else "") + format_macs(item.cost),
                 "stored": "yes" if item.stored else "no", "notebooks": ", ".join(item.notebooks),
                 "note": item.note} for i, item in enumerate(self.items)]
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """One line: models, stored, to train, total estimated MACs."""
        todo = self.missing()
        return (f"profile {self.profile}: {len(self.items)} models, {len(self.items) - len(todo)} stored, "
                f"{len(todo)} to train; estimated training cost {format_macs(self.total_macs)}MACs "
                f"({format_macs(sum(i.cost for i in todo))}MACs still to train; thop forward MACs x "
                f"training images x epochs)")


def format_duration(seconds: float) -> str:
    """``8000`` -> ``"2 h 13 min"``, ``95`` -> ``"1 min 35 s"``, ``42`` -> ``"42 s"``."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
    s, minutes = round(seconds), round(seconds / 60)
    if minutes >= 60:
        return f"{minutes // 60} h {minutes % 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{s} s"


def training_rate(spec: ModelSpec, *, steps: int = 2, warmup: int = 1, device: str | None = None) -> float:
    """Training images per second of ``spec`` on this machine: ``steps`` timed steps of its recipe (after
    ``warmup`` untimed ones) on random images of its data set's size (:func:`modgraph.train.measure_throughput`).

    The model is built from its seed and thrown away; nothing is stored.
    """
    from modgraph.models import create_model
    from modgraph.train import measure_throughput

    _, classes, size = _dataset_facts(spec.dataset)
    model = create_model(spec.arch, num_classes=classes, width=spec.width, seed=0, **dict(spec.overrides))
    return measure_throughput(model, spec.recipe_config(), image_size=size, num_classes=classes, steps=steps,
                              warmup=warmup, device=device)["images_per_s"]


@dataclass(frozen=True)
class TrainingEstimate:
    """How long the missing models of a plan will train here.

    ``seconds``: item key -> estimated training time; ``rates``: recipe name ->
    forward multiply-accumulates per second its training runs at, timed on
    ``timed`` (the item key of that recipe's costliest missing model);
    ``calibration_s``: what timing them took.
    """

    seconds: dict[str, float]
    rates: dict[str, float]
    timed: dict[str, str]
    calibration_s: float

    @property
    def total_s(self) -> float:
        """Estimated seconds of training every missing model, one after another."""
        return float(sum(self.seconds.values()))

    def summary(self) -> str:
        """One line: how many models, the estimated time, how it was estimated."""
        return (f"{len(self.seconds)} model(s) to train, estimated {format_duration(self.total_s)} on this machine "
                f"(their recipes' training steps timed here in {self.calibration_s:.0f} s, scaled by thop MACs x "
                f"images x epochs; evaluation and the machine's changes of speed are not counted)")


def _timing_spec(item: PlanItem) -> ModelSpec:
    """The spec whose training step stands for ``item``'s: its own, else its parent's (a derived model)."""
    return item.spec if item.spec is not None else item.derived.parent


def estimate_training(plan: Plan, *, rate: Callable[[ModelSpec], float] | None = None) -> TrainingEstimate:
    """Estimate the training time of ``plan``'s missing models on this machine.

    Per recipe, ``rate`` (images/s of a spec's training step; default :func:`training_rate`)
    times the costliest missing model; its images/s x its forward MACs per
    image is the recipe's rate of MACs, and each missing model of the recipe
    takes its :attr:`PlanItem.cost` divided by that rate. Measured on the quick
    book (2-core CPU), the rate of MACs of the CNNs of one recipe ranged from 23 to 36 G/s.
    """
    rate = rate or training_rate
    start = time.perf_counter()
    by_recipe: dict[str, list[PlanItem]] = {}
    for item in plan.missing():
        by_recipe.setdefault(_timing_spec(item).recipe, []).append(item)
    rates, timed, seconds = {}, {}, {}
    for recipe, items in by_recipe.items():
        costliest = max(items, key=lambda item: item.cost)
        images_per_s = rate(_timing_spec(costliest))
        if not math.isfinite(images_per_s) or images_per_s <= 0:
            raise ValueError(f"rate must give images/s > 0, got {images_per_s!r} for {costliest.label}")
        rates[recipe], timed[recipe] = images_per_s * costliest.macs, costliest.key
        seconds.update({item.key: item.cost / rates[recipe] for item in items})
    return TrainingEstimate(seconds, rates, timed, time.perf_counter() - start)


def _epochs_text(epochs: Sequence[int]) -> str:
    if not epochs:
        return ""
    if list(epochs) == list(range(epochs[0], epochs[-1] + 1)) and len(epochs) > 2:
        return f"{epochs[0]}-{epochs[-1]}"
    return ",".join(map(str, epochs))


def _label(spec: ModelSpec) -> str:
    extra = [f"w{spec.width:g}"]
    if spec.parent is not None:
        extra.append(f"from {spec.parent.arch}, {spec.recipe_config().epochs} ep")
    if spec.removed:
        extra.append(f"-{len(spec.removed)} layers")
    return f"{spec.arch} on {spec.dataset} ({', '.join(extra)})"


def make_plan(profile: str, *, resolve: bool = True, progress: bool = False,
              requests: Mapping[str, Sequence[Request]] | None = None) -> Plan:
    """The plan of ``profile`` (see the module docstring).

    ``resolve``: turn a :class:`Derived` request whose parent is stored into its
    spec (this loads the parent and measures its curve when the cache lacks it).
    ``requests``: notebook -> its model requests, to plan only these (e.g. the
    chapters a build will execute); default: every notebook's under ``profile``
    (:func:`notebook_requests`).
    """
    specs: dict[str, ModelSpec] = {}
    used: dict[str, list[str]] = {}
    derived: dict[str, Derived] = {}

    def add(spec: ModelSpec, nb: str) -> None:
        if spec.parent is not None:
            add(spec.parent, nb)
        key = spec_hash(spec)
        if key in specs:
            union = tuple(sorted(set(specs[key].snapshot_epochs) | set(spec.snapshot_epochs)))
            spec = dataclasses.replace(specs[key], snapshot_epochs=union)
        specs[key] = spec
        if nb not in used.setdefault(key, []):
            used[key].append(nb)

    for nb, asked in (notebook_requests(profile) if requests is None else requests).items():
        for request in asked:
            if isinstance(request, Derived):
                add(request.parent, nb)
                derived.setdefault(request.key, request)
                used.setdefault(request.key, []).append(nb)
            else:
                add(request, nb)
    notes: dict[str, str] = {}
    for key, request in list(derived.items()):
        if not resolve or not _is_stored(specs[spec_hash(request.parent)]):
            continue
        spec = request.resolve(progress=progress)
        if spec is None:
            notes[key] = "its parent's curve finds nothing to remove: no model"
            continue
        for nb in used.pop(key):
            add(spec, nb)
        del derived[key]
    return Plan(profile, _ordered(specs, derived, used, notes))


def _is_stored(spec: ModelSpec) -> bool:
    held = stored_snapshots(spec)
    return held is not None and set(spec.snapshot_epochs) <= set(held)


def _ordered(specs: Mapping[str, ModelSpec], derived: Mapping[str, Derived], used: Mapping[str, list[str]],
             notes: Mapping[str, str]) -> tuple[PlanItem, ...]:
    level: dict[str, int] = {}

    def depth(spec: ModelSpec) -> int:
        key = spec_hash(spec)
        if key not in level:
            level[key] = 0 if spec.parent is None else depth(spec.parent) + 1
        return level[key]

    items = []
    for key, spec in specs.items():
        images, _, _ = _dataset_facts(spec.dataset)
        items.append(PlanItem(key, _label(spec), spec, None, spec_hash(spec.parent) if spec.parent else None,
                              depth(spec), tuple(used[key]),
                              _macs(spec.arch, spec.dataset, spec.width, spec.overrides), images,
                              spec.recipe_config().epochs, _is_stored(spec)))
    for key, request in derived.items():
        parent = request.parent
        images, _, _ = _dataset_facts(parent.dataset)
        items.append(PlanItem(key, f"{parent.arch} on {parent.dataset} pruned by its curve ({request.how}; spec "
                                   f"known once {parent.arch} is trained)", None, request, spec_hash(parent),
                              depth(parent) + 1, tuple(used[key]),
                              _macs(parent.arch, parent.dataset, parent.width, parent.overrides), images,
                              request.epochs, False, notes.get(key, "")))
    order = sorted(range(len(items)), key=lambda i: (items[i].level, i))
    return tuple(items[i] for i in order)
