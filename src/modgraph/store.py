"""Trained models on demand: describe a model by a :class:`ModelSpec`, get it with :func:`get_model`.

The first request trains the model (resuming an interrupted run) and stores it
under ``paths.models_dir()/<arch>-<dataset>-<recipe>-<hash>/``:

- ``model.pt``: ``{"state_dict", "spec", "meta"}``, ``meta`` being what rebuilds
  the network (arch, num_classes, width, overrides, mean, std);
- ``snapshots/epoch_XXX.pt``: the weights after epoch XXX (000: initialisation),
  ``{"state_dict", "epoch", "meta", "spec"}``;
- ``metrics.json``: spec, hash, resolved recipe, data set, per-epoch history,
  final test accuracy (fraction), wall time, device, hardware, code version
  and the sha256 of every weight file; written last, so its presence marks a
  complete run;
- ``resume.pt`` while training (removed when done).

Later requests verify the sha256s and load in seconds; a corrupted or
truncated file is retrained with a warning, never loaded, and nothing stored is
deleted before its replacement is complete (:func:`get_model`). One process at
a time works on a model (:func:`model_lock`): a second request for a model
being trained waits, then loads it. With ``$MODGRAPH_REQUEST_LOG`` set to a
file, every request appends one JSON line to it (:data:`REQUEST_LOG_ENV`), so
a run can be checked against :mod:`modgraph.plan`. The hash covers the
spec with its recipe resolved to all its fields (a changed recipe is a new
model), but not ``snapshot_epochs``: a stored run serves every request whose
snapshots it holds; otherwise it is retrained with the union of both sets.

Fine-tuning: ``parent`` names a trained model whose weights initialise this one
through ``init``, an :data:`INITIALISERS` entry ``fn(parent_model, child_model, removed)``:
``copy`` (same architecture, strict ``load_state_dict``) or ``transfer``
(:func:`modgraph.prune.transfer_weights`: a child without the parent's layers
``removed``; empty means units cut from the back of stages).
Register further mappings with ``INITIALISERS.register(name, fn)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import pickle
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ClassVar, ContextManager, Iterable, Iterator, Mapping, Union

import torch
from filelock import FileLock, Timeout
from torch import nn

from modgraph import paths, provenance
from modgraph.checks import positive_number
from modgraph.data import DATASETS, ArrayDataset, load_dataset
from modgraph.devices import resolve_device
from modgraph.registry import Registry
from modgraph.train import RESUME_FILE, Recipe, evaluate, get_recipe, snapshot_path, train_model

__all__ = [
    "ModelSpec",
    "check_specs",
    "StoredModel",
    "INITIALISERS",
    "spec_hash",
    "model_dir",
    "model_lock",
    "stored_snapshots",
    "REQUEST_LOG_ENV",
    "get_model",
    "accuracy_percent",
    "Trained",
    "Snapshot",
    "Initial",
    "WeightsFile",
    "WeightsSource",
    "check_source",
    "Weights",
    "resolve",
    "load_checkpoint",
]

MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"
LOCK_SUFFIX = ".lock"
STAGING_SUFFIX = ".staging"
PREVIOUS_SUFFIX = ".previous"
REQUEST_LOG_ENV = "MODGRAPH_REQUEST_LOG"
"""Environment variable naming a file to which :func:`get_model` appends one JSON line per request:
``{"hash", "arch", "dataset", "snapshot_epochs", "trained", "error"}``."""

INITIALISERS: Registry[Callable[[nn.Module, nn.Module, tuple[str, ...]], Any]] = Registry("initialiser")


def _copy_weights(parent: nn.Module, child: nn.Module, removed: tuple[str, ...] = ()) -> None:
    if removed:
        raise ValueError(f"init 'copy' keeps every layer; use init='transfer' to remove {list(removed)}")
    try:
        child.load_state_dict(parent.state_dict())
    except RuntimeError as err:
        raise ValueError(f"init 'copy' needs the parent's architecture: {_first_line(err)}") from None


def _transfer_weights(parent: nn.Module, child: nn.Module, removed: tuple[str, ...] = ()) -> None:
    importlib.import_module("modgraph.prune").transfer_weights(parent, child, removed=list(removed) or None)


INITIALISERS.register("copy", _copy_weights)
INITIALISERS.register("transfer", _transfer_weights)


def _first_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def _freeze(value: Any) -> Any:
    """Lists (from JSON) as tuples, recursively, so configurations stay hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise ValueError(f"override values must be numbers, strings, booleans, None or sequences of them, "
                     f"got {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines a trained model.

    ``recipe``: a :data:`modgraph.train.RECIPES` name; ``epochs``: ``None`` for
    the recipe's, otherwise the recipe stretched to that many epochs
    (:meth:`Recipe.with_epochs`); ``overrides``: ``(key, value)`` pairs (or a
    dict) passed to ``create_model``; ``parent``/``init``: start from a trained
    model's weights (``init`` defaults to ``"copy"``); ``removed``: the
    parent's layers the child lacks, for ``init="transfer"`` when they are not
    simply the last units of their stages; ``snapshot_epochs``:
    epochs whose weights to keep (0 = initialisation). Names are validated
    and lower-cased on construction.
    """

    arch: str
    dataset: str
    recipe: str = "fast"
    epochs: int | None = None
    seed: int = 0
    width: float = 1.0
    overrides: tuple[tuple[str, Any], ...] = ()
    parent: "ModelSpec | None" = None
    init: str | None = None
    removed: tuple[str, ...] = ()
    snapshot_epochs: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        from modgraph.models import MODELS, model_config

        pairs = self.overrides.items() if isinstance(self.overrides, Mapping) else self.overrides
        overrides = tuple(sorted((str(k), _freeze(v)) for k, v in pairs))
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        MODELS.get(self.arch)
        set_("arch", self.arch.lower())
        set_("dataset", DATASETS.get(self.dataset).name)
        set_("recipe", get_recipe(self.recipe).name)
        set_("overrides", overrides)
        model_config(self.arch, **dict(overrides))
        set_("width", positive_number(self.width, "width"))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int)
                                        or self.epochs < 1):
            raise ValueError(f"epochs must be None or an int >= 1, got {self.epochs!r}")
        if self.parent is not None and not isinstance(self.parent, ModelSpec):
            raise ValueError(f"parent must be a ModelSpec or None, got {type(self.parent).__name__}")
        if self.parent is None and self.init is not None:
            raise ValueError(f"init {self.init!r} needs a parent model to initialise from")
        if self.parent is not None:
            INITIALISERS.get(self.init or "copy")
            set_("init", (self.init or "copy").lower())
        if self.removed and self.parent is None:
            raise ValueError(f"removed={list(self.removed)} needs a parent model to remove layers from")
        set_("removed", tuple(str(name) for name in self.removed))
        snaps = tuple(sorted({int(e) for e in self.snapshot_epochs}))
        epochs = self.recipe_config().epochs
        if any(not 0 <= e <= epochs for e in snaps):
            raise ValueError(f"snapshot_epochs {snaps} must lie in 0..{epochs} (0 = initialisation)")
        set_("snapshot_epochs", snaps)

    def recipe_config(self) -> Recipe:
        """The resolved training recipe."""
        return get_recipe(self.recipe).for_arch(self.arch, self.epochs)

    def canonical(self) -> dict[str, Any]:
        """JSON-ready description that determines the trained weights (no ``snapshot_epochs``)."""
        return {
            "arch": self.arch, "dataset": self.dataset, "recipe": self.recipe_config().to_dict(),
            "seed": self.seed, "width": self.width, "overrides": [[k, v] for k, v in self.overrides],
            "parent": self.parent.canonical() if self.parent is not None else None, "init": self.init,
            **({"removed": list(self.removed)} if self.removed else {}),
        }


def check_specs(specs: Iterable[ModelSpec]) -> list[ModelSpec]:
    """``specs`` as a list, checked: a non-empty sequence of :class:`ModelSpec` (e.g. :func:`modgraph.cache.trained_specs`)."""
    items = [] if isinstance(specs, (str, ModelSpec)) else list(specs)
    if not items or not all(isinstance(spec, ModelSpec) for spec in items):
        raise ValueError(f"specs must be a non-empty list of ModelSpec (see modgraph.cache.trained_specs), got {specs!r}")
    return items


def spec_hash(spec: ModelSpec) -> str:
    """12 hex digits of the sha256 of ``spec.canonical()`` as sorted, compact JSON."""
    text = json.dumps(spec.canonical(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def model_dir(spec: ModelSpec) -> Path:
    """``paths.models_dir()/<arch>-<dataset>-<recipe>-<hash>``."""
    return paths.models_dir() / f"{spec.arch}-{spec.dataset}-{spec.recipe}-{spec_hash(spec)}"


@dataclass(frozen=True, eq=False)
class StoredModel:
    """A stored, trained model: ``model`` in eval mode on the requested device.

    ``metrics``: the run's ``metrics.json``; ``trained``: whether this call trained it.
    """

    model: nn.Module
    spec: ModelSpec
    path: Path
    metrics: dict[str, Any]
    trained: bool = False

    @property
    def snapshot_epochs(self) -> tuple[int, ...]:
        """Epochs with saved weights."""
        return tuple(self.metrics.get("snapshot_epochs", ()))

    def snapshot(self, epoch: int) -> nn.Module:
        """The model after ``epoch`` epochs (0: initialisation), eval mode, on the model's device."""
        if epoch not in self.snapshot_epochs:
            raise ValueError(f"no snapshot of epoch {epoch} in {self.path}; saved epochs: "
                             f"{', '.join(map(str, self.snapshot_epochs)) or 'none'} (request them with "
                             f"ModelSpec(snapshot_epochs=...))")
        path = snapshot_path(self.path, epoch)
        rel = path.relative_to(self.path).as_posix()
        if _sha256(path) != self.metrics["files"].get(rel):
            raise ValueError(f"snapshot {path} is corrupted (sha256 differs from metrics.json); delete "
                             f"{self.path} to retrain")
        device = next(self.model.parameters()).device
        return _load_weights(path, self.metrics["model"], device)


def model_lock(spec: ModelSpec, *, timeout: float | None = None, progress: bool = True) -> ContextManager[Path]:
    """Hold the store's lock on ``spec``'s folder (a context manager yielding :func:`model_dir`).

    :func:`get_model` holds it while it verifies, trains or replaces a model,
    so of several processes asking for the same model one trains and the
    others wait, then load the stored copy; hold it yourself around anything
    else that writes into a model folder. The lock is an OS-level advisory
    lock (``filelock.FileLock``: ``flock`` on POSIX, ``msvcrt.locking`` on
    Windows) on the file ``<models_dir>/<folder name>.lock``, beside the
    folder because the folder itself is replaced. The operating system
    releases it when the holding process exits or dies (``kill -9``, out of
    memory), so a lock is never stale and a leftover ``.lock`` file means
    nothing; there is no fallback to a plain lock file, which a crash would
    leave held. It is re-entrant within a thread and excludes other threads
    and processes. Across machines (e.g. Slurm jobs sharing a store) it is as
    good as the shared file system's ``flock``: honoured by NFSv4 and by
    Lustre or GPFS mounted with ``flock``, where a dead node's lock is freed
    when its lease expires. ``timeout``: seconds to wait (``None``: no limit),
    then :class:`TimeoutError`; ``progress``: say on stderr that it waits.
    """
    return _locked(model_dir(spec), timeout, progress)


@contextlib.contextmanager
def _locked(folder: Path, timeout: float | None, progress: bool) -> Iterator[Path]:
    path = folder.with_name(folder.name + LOCK_SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, is_singleton=True, fallback_to_soft=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if progress:
            print(f"waiting for another process that holds {path} (training or storing {folder.name})",
                  file=sys.stderr, flush=True)
        lock.acquire(timeout=-1 if timeout is None else timeout)
    try:
        yield folder
    finally:
        lock.release()


def stored_snapshots(spec: ModelSpec) -> tuple[int, ...] | None:
    """The snapshot epochs the store holds for ``spec`` (a complete run's ``metrics.json``), ``None`` if none.

    Cheap (no sha256 check, no lock): for planning; :func:`get_model` verifies.
    """
    try:
        metrics = json.loads((model_dir(spec) / METRICS_FILE).read_text())
        if metrics.get("spec_hash") != spec_hash(spec):
            return None
        return tuple(int(e) for e in metrics["snapshot_epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _log_request(spec: ModelSpec, trained: bool | None, error: str | None) -> None:
    """Append the request to ``$MODGRAPH_REQUEST_LOG`` when set (one ``O_APPEND`` write per line)."""
    log = os.environ.get(REQUEST_LOG_ENV)
    if not log:
        return
    line = json.dumps({"hash": spec_hash(spec), "arch": spec.arch, "dataset": spec.dataset,
                       "snapshot_epochs": list(spec.snapshot_epochs), "trained": trained, "error": error})
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def get_model(spec: ModelSpec, device: str | torch.device | None = None, progress: bool = True) -> StoredModel:
    """The trained model of ``spec``: from the store when a verified copy exists, else trained and stored.

    Holds :func:`model_lock` throughout. A stored model is never deleted
    before its replacement is complete: retraining (for snapshots it lacks,
    or because a file is corrupted) happens in ``<folder>.staging/`` (an
    interrupted retraining resumes there) and the finished run replaces the
    folder by renames, the old one kept as ``<folder>.previous/`` until the
    new one is in place.
    """
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    try:
        stored = _get_model(spec, resolve_device(device), progress)
    except BaseException as err:
        _log_request(spec, None, f"{type(err).__name__}: {_first_line(err)}")
        raise
    _log_request(spec, stored.trained, None)
    return stored


def _get_model(spec: ModelSpec, dev: torch.device, progress: bool) -> StoredModel:
    with model_lock(spec, progress=progress) as folder:
        _recover(folder)
        snaps = set(spec.snapshot_epochs)
        target = folder
        if (folder / METRICS_FILE).exists():
            stored, problem, held = _verified(spec, folder, dev)
            if stored is not None and snaps <= set(held):
                return stored
            if stored is not None:
                warnings.warn(f"stored model {folder.name} holds snapshots {sorted(held)} but {sorted(snaps)} "
                              f"were requested; retraining with {sorted(snaps | set(held))} beside it",
                              stacklevel=3)
            else:
                warnings.warn(f"stored model {folder} is unusable ({problem}); retraining beside it",
                              stacklevel=3)
            snaps |= set(held)
            target = folder.with_name(folder.name + STAGING_SUFFIX)
        _train(spec, target, dev, tuple(sorted(snaps)), progress)
        stored, problem, _ = _verified(spec, target, dev)
        if stored is None:
            raise ValueError(f"freshly stored model {target} fails verification: {problem}")
        if target != folder:
            _replace(folder, target)
        return StoredModel(stored.model, spec, folder, stored.metrics, trained=True)


def _replace(folder: Path, staged: Path) -> None:
    """Put the complete run ``staged`` in place of ``folder`` by renames; at every instant one of them is whole."""
    previous = folder.with_name(folder.name + PREVIOUS_SUFFIX)
    shutil.rmtree(previous, ignore_errors=True)
    if folder.exists():
        os.replace(folder, previous)
    os.replace(staged, folder)
    shutil.rmtree(previous, ignore_errors=True)


def _recover(folder: Path) -> None:
    """Finish a replacement that a crash interrupted (the caller holds the lock).

    A staged run with its ``metrics.json`` is complete (it holds every snapshot
    of the folder it replaces) and goes in place; a ``.previous`` folder is
    dropped once the folder is whole again, and moved back if it is absent.
    """
    previous = folder.with_name(folder.name + PREVIOUS_SUFFIX)
    staged = folder.with_name(folder.name + STAGING_SUFFIX)
    if previous.is_dir() and not folder.exists():
        os.replace(previous, folder)
    if (staged / METRICS_FILE).exists():
        _replace(folder, staged)
    if (folder / METRICS_FILE).exists():
        shutil.rmtree(previous, ignore_errors=True)


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(spec: ModelSpec, folder: Path, device: torch.device) -> tuple[StoredModel | None, str, list[int]]:
    """The stored model if its weights and requested snapshots match their sha256, else ``None`` and why;
    and the saved snapshot epochs."""
    try:
        metrics = json.loads((folder / METRICS_FILE).read_text())
        files, held, meta = metrics["files"], list(metrics["snapshot_epochs"]), metrics["model"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, f"unreadable {METRICS_FILE}: {err}", []
    if metrics.get("spec_hash") != spec_hash(spec):
        return None, f"{METRICS_FILE} belongs to spec {metrics.get('spec_hash')}, not {spec_hash(spec)}", held
    needed = [MODEL_FILE] + [snapshot_path(folder, e).relative_to(folder).as_posix() for e in spec.snapshot_epochs
                             if e in held]
    bad = [name for name in needed if _sha256(folder / name) != files.get(name)]
    if bad:
        return None, f"{', '.join(bad)} missing or corrupted (sha256 differs from {METRICS_FILE})", held
    if meta.get("arch") != spec.arch:
        raise ValueError(f"{folder / MODEL_FILE} holds a {meta.get('arch')!r} model, not {spec.arch!r}")
    try:
        model = _load_weights(folder / MODEL_FILE, meta, device)
    except ValueError as err:
        return None, str(err), held
    return StoredModel(model, spec, folder, metrics), "", held


def _build(meta: Mapping[str, Any]) -> nn.Module:
    from modgraph.models import create_model

    return create_model(meta["arch"], num_classes=int(meta["num_classes"]), width=float(meta["width"]),
                        mean=tuple(meta["mean"]), std=tuple(meta["std"]),
                        **{k: _freeze(v) for k, v in meta["overrides"]})


def _load_weights(path: Path, meta: Mapping[str, Any], device: torch.device) -> nn.Module:
    """A fresh ``meta`` model with the ``state_dict`` of ``path``, eval mode, on ``device``."""
    state = _read(path)
    model = _build(meta)
    _load_state(model, state.get("state_dict", state), path, meta["arch"])
    return model.to(device).eval()


def _read(path: Path) -> Mapping[str, Any]:
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, IndexError, AttributeError,
            pickle.UnpicklingError) as err:
        raise ValueError(f"cannot read checkpoint {path} (truncated or not a torch file?): "
                         f"{type(err).__name__}: {_first_line(err)}") from None
    if not isinstance(saved, Mapping):
        raise ValueError(f"checkpoint {path} holds a {type(saved).__name__}, not a state dict")
    return saved


def _load_state(model: nn.Module, state: Any, path: Path, arch: str, built: str = "") -> None:
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"checkpoint {path} holds no state dict of tensors")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise ValueError(f"checkpoint {path} does not fit model {arch!r}{built}: missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}, shape mismatches {shapes[:4]}")
    model.load_state_dict(state)


def _model_meta(spec: ModelSpec, train: ArrayDataset) -> dict[str, Any]:
    return {"arch": spec.arch, "num_classes": train.num_classes, "width": spec.width,
            "overrides": [[k, v] for k, v in spec.overrides], "mean": list(train.mean), "std": list(train.std)}


def _check_fits(model: nn.Module, spec: ModelSpec, data: ArrayDataset) -> None:
    """``ValueError`` unless ``model`` maps ``data``'s images to ``data.num_classes`` logits."""
    h, w = data.image_size
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, 3, h, w))
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"model {spec.arch!r} cannot take {spec.dataset} images of {h}x{w}: "
                         f"{_first_line(err)}") from None
    if out.shape != (2, data.num_classes):
        raise ValueError(f"model {spec.arch!r} outputs {tuple(out.shape[1:])} values per image but "
                         f"{spec.dataset} has {data.num_classes} classes")


def _fresh_model(spec: ModelSpec, data: ArrayDataset) -> nn.Module:
    from modgraph.models import create_model

    return create_model(spec.arch, num_classes=data.num_classes, width=spec.width, mean=data.mean, std=data.std,
                        seed=spec.seed, **dict(spec.overrides))


def accuracy_percent(metrics: Mapping[str, Any]) -> float | None:
    """Final test accuracy (%) from a stored model's training metrics; ``None`` when not recorded."""
    value = metrics.get("final_test_acc")
    return None if value is None else round(100.0 * float(value), 2)


@dataclass(frozen=True, eq=False)
class Weights:
    """A network at the weights a source names (eval mode), and what its curves record about them (``meta``)."""

    model: nn.Module
    meta: dict[str, Any]


@dataclass(frozen=True)
class _OfSpec:
    """Weights of the network a store spec describes."""

    spec: ModelSpec
    kind: ClassVar[str] = ""

    @property
    def arch(self) -> str:
        """The spec's architecture."""
        return self.spec.arch

    @property
    def dataset(self) -> str:
        """The data set the spec trains on."""
        return self.spec.dataset

    def key(self) -> dict[str, Any]:
        """What determines the weights (part of a cache key)."""
        return {"kind": self.kind, "spec": self.spec.canonical()}


@dataclass(frozen=True)
class Trained(_OfSpec):
    """The weights ``spec``'s training ends with (trained by the store on first use)."""

    kind: ClassVar[str] = "trained"

    def load(self, device: torch.device, progress: bool) -> Weights:
        """The stored model; ``meta``: its spec and final test accuracy (%)."""
        stored = get_model(self.spec, device=device, progress=progress)
        return Weights(stored.model, {"spec": self.spec.canonical(), "test_accuracy": accuracy_percent(stored.metrics)})


@dataclass(frozen=True)
class Snapshot(_OfSpec):
    """The weights of ``spec``'s training after ``epoch`` epochs (0: the initialisation), from its snapshots."""

    epoch: int
    kind: ClassVar[str] = "snapshot"

    def __post_init__(self) -> None:
        if isinstance(self.epoch, bool) or not isinstance(self.epoch, int) or self.epoch < 0:
            raise ValueError(f"epoch must be an int >= 0 (0 = initialisation), got {self.epoch!r}")

    def key(self) -> dict[str, Any]:
        """What determines the weights (part of a cache key)."""
        return {**super().key(), "epoch": self.epoch}

    def load(self, device: torch.device, progress: bool) -> Weights:
        """The snapshot; ``meta``: the epoch and the test accuracy (%) after it (the history's; evaluated for 0)."""
        stored = get_model(self.spec, device=device, progress=progress)
        model = stored.snapshot(self.epoch)
        if self.epoch == 0:
            accuracy = round(100.0 * evaluate(model, load_dataset(self.spec.dataset, "test", progress=False))[0], 2)
        else:
            record = [h for h in stored.metrics.get("history", []) if h.get("epoch") == self.epoch]
            if not record:
                raise ValueError(f"the training history in {stored.path} has no record of epoch {self.epoch}")
            accuracy = round(100.0 * float(record[0]["test_acc"]), 2)
        return Weights(model, {"epoch": self.epoch, "test_accuracy": accuracy})


@dataclass(frozen=True)
class Initial(_OfSpec):
    """The weights ``spec``'s training starts from (``create_model`` with ``spec.seed``); not for a fine-tuned spec."""

    kind: ClassVar[str] = "initial"

    def __post_init__(self) -> None:
        if self.spec.parent is not None:
            raise ValueError(f"spec {self.spec.arch!r} is initialised from a parent model; initial weights need a "
                             "spec trained from scratch (parent=None)")

    def load(self, device: torch.device, progress: bool) -> Weights:
        """The freshly built network; ``meta``: its spec and no test accuracy."""
        model = _fresh_model(self.spec, load_dataset(self.spec.dataset, "test", progress=progress))
        return Weights(model.to(device).eval(), {"spec": self.spec.canonical(), "test_accuracy": None})


@dataclass(frozen=True)
class WeightsFile:
    """Architecture ``arch`` with the state dict of the file ``path`` (e.g. torchvision's), normalising its input
    with the statistics of ``dataset``."""

    arch: str
    path: str
    dataset: str
    kind: ClassVar[str] = "file"

    def key(self) -> dict[str, Any]:
        """What determines the weights (part of a cache key): the architecture and the file's sha256."""
        sha = _sha256(Path(self.path))
        if sha is None:
            raise ValueError(f"no weights file {paths.relative(self.path)}")
        return {"kind": self.kind, "arch": self.arch, "sha256": sha}

    def load(self, device: torch.device, progress: bool) -> Weights:
        """The network with the file's weights; ``meta`` records nothing more."""
        from modgraph.models import create_model

        data = load_dataset(self.dataset, "test", progress=progress)
        model = create_model(self.arch, weights=str(self.path), mean=data.mean, std=data.std)
        return Weights(model.to(device).eval(), {})


WeightsSource = Union[Trained, Snapshot, Initial, WeightsFile]
"""Where a network's weights come from: a store spec's training, one of its snapshots, its initialisation, a file."""


def check_source(source: Any) -> WeightsSource:
    """``source`` if it is a weights source; ``ValueError`` naming the kinds otherwise (before any work)."""
    if not isinstance(source, (Trained, Snapshot, Initial, WeightsFile)):
        raise ValueError(f"source must be a Trained, Snapshot, Initial or WeightsFile, got {type(source).__name__}")
    return source


def resolve(source: WeightsSource, device: str | torch.device | None = None, progress: bool = True) -> Weights:
    """The network at the weights ``source`` names, eval mode, on ``device``, and what its curves record."""
    return check_source(source).load(resolve_device(device), progress)


def _train(spec: ModelSpec, folder: Path, device: torch.device, snaps: tuple[int, ...], progress: bool) -> None:
    recipe = spec.recipe_config()
    train = load_dataset(spec.dataset, "train", progress=progress)
    test = load_dataset(spec.dataset, "test", progress=progress)
    meta = _model_meta(spec, train)
    canonical = spec.canonical()
    model = _fresh_model(spec, train)
    _check_fits(model, spec, train)
    if spec.parent is not None:
        parent = get_model(spec.parent, device=device, progress=progress)
        INITIALISERS.get(spec.init)(parent.model, model, spec.removed)
    folder.mkdir(parents=True, exist_ok=True)
    result = train_model(model, train, test, recipe, seed=spec.seed, device=device, checkpoint_dir=folder,
                         snapshot_epochs=snaps, snapshot_meta={"meta": meta, "spec": canonical},
                         progress=progress, initialise=spec.parent is None)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    provenance.atomic_torch_save({"state_dict": state, "spec": canonical, "meta": meta}, folder / MODEL_FILE)
    names = [MODEL_FILE] + [snapshot_path(folder, e).relative_to(folder).as_posix() for e in snaps]
    provenance.atomic_write_json(folder / METRICS_FILE, {
        "spec": canonical, "spec_hash": spec_hash(spec), "model": meta,
        "dataset": {"name": train.name, "source": train.source, "n_train": len(train), "n_test": len(test),
                    "num_classes": train.num_classes, "image_size": list(train.image_size)},
        "snapshot_epochs": list(snaps), **result,
        "hardware": provenance.hardware(), "code_version": provenance.code_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {name: _sha256(folder / name) for name in names},
    })
    (folder / RESUME_FILE).unlink(missing_ok=True)


def _checkpoint_file(path: str | Path) -> Path:
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        what = f"store folder {path} holds no {MODEL_FILE}" if path.is_dir() else f"checkpoint {path} does not exist"
        raise ValueError(f"{what}; give a store folder, its {MODEL_FILE}, a snapshot or a state-dict file")
    return file


def _recorded(saved: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``meta`` and ``spec`` a checkpoint records (empty when it records none)."""
    meta, spec = saved.get("meta"), saved.get("spec")
    return (dict(meta) if isinstance(meta, Mapping) else {}), (dict(spec) if isinstance(spec, Mapping) else {})


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """What the checkpoint at ``path`` (as for :func:`load_checkpoint`) records about itself.

    ``{"path", "arch", "dataset", "num_classes", "width", "spec"}``, each ``None``
    where the file does not record it (a bare state dict records nothing).
    """
    file = _checkpoint_file(path)
    return _info(file, _read(file))


def _info(file: Path, saved: Mapping[str, Any]) -> dict[str, Any]:
    meta, spec = _recorded(saved)
    return {"path": str(file), "arch": meta.get("arch", spec.get("arch")), "dataset": spec.get("dataset"),
            "num_classes": meta.get("num_classes"), "width": meta.get("width", spec.get("width")),
            "spec": spec or None}


def _check_recorded(path: Path, info: Mapping[str, Any], arch: str | None, dataset: str | None,
                    num_classes: int | None, width: float | None) -> None:
    """``ValueError`` naming every recorded property that differs from the caller's expectation."""
    if arch is not None and info["arch"] is not None and arch.lower() != info["arch"]:
        raise ValueError(f"checkpoint {path} holds a {info['arch']!r} model, not {arch!r}")
    wanted = {"dataset": None if dataset is None else DATASETS.get(dataset).name, "num_classes": num_classes,
              "width": None if width is None else float(width)}
    bad = [f"{key} {info[key]!r}, not {value!r}" for key, value in wanted.items()
           if value is not None and info[key] is not None and info[key] != value]
    if bad:
        raise ValueError(f"checkpoint {path} was trained with {'; '.join(bad)}: its curve or pruning would "
                         f"describe another model")


def load_checkpoint(path: str | Path, arch: str | None = None, *, dataset: str | None = None,
                    num_classes: int | None = None, width: float | None = None,
                    device: str | torch.device | None = None,
                    overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> nn.Module:
    """The model saved at ``path`` (eval mode, on ``device``; ``None``: CUDA when available).

    ``path``: a store folder, its ``model.pt`` or a snapshot (which record
    their architecture, classes and width, and the store's spec with its data
    set), or a bare state dict / ``{"state_dict": ...}`` file of a modgraph
    model, which needs ``arch`` and is built with ``width`` (default 1),
    ``overrides`` and ``num_classes`` (default: the rows of the last 2-D
    weight, i.e. the classifier's). ``arch``, ``dataset``, ``num_classes`` and
    ``width``, when given, must match what the file records: ``ValueError``
    naming both values otherwise, as for unreadable files.
    """
    file = _checkpoint_file(path)
    dev = resolve_device(device)
    saved = _read(file)
    meta, _ = _recorded(saved)
    info = _info(file, saved)
    _check_recorded(file, info, arch, dataset, num_classes, width)
    if "arch" in meta:
        model = _build(meta)
        _load_state(model, saved.get("state_dict"), file, meta["arch"])
        return model.to(dev).eval()
    if arch is None:
        raise ValueError(f"checkpoint {file} does not record its architecture; pass arch=")
    from modgraph.models import create_model

    state = saved.get("state_dict", saved)
    if not isinstance(state, Mapping):
        raise ValueError(f"checkpoint {file} holds no state dict of tensors")
    if num_classes is None:
        weights = [v for v in state.values() if isinstance(v, torch.Tensor) and v.ndim == 2]
        if not weights:
            raise ValueError(f"checkpoint {file} has no 2-D classifier weight; pass num_classes=")
        num_classes = int(weights[-1].shape[0])
    width = float(width if width is not None else info["width"] if info["width"] is not None else 1.0)
    pairs = overrides.items() if isinstance(overrides, Mapping) else overrides
    model = create_model(arch, num_classes=num_classes, width=width, **{k: _freeze(v) for k, v in pairs})
    _load_state(model, state, file, arch, f" (width {width:g}, {num_classes} classes)")
    return model.to(dev).eval()
