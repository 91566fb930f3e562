"""Training recipes and the training loop (device-resident data, resumable, reproducible).

A :class:`Recipe` is the whole training configuration; :data:`RECIPES` holds
the named ones and variants are ``dataclasses.replace(get_recipe("fast"), epochs=10)``.

Registered recipes:

``paper``
    Exactly the paper's CIFAR recipe: SGD lr 0.01, momentum 0.9, weight decay
    0.005, batch 256, 150 epochs, lr x0.1 at epochs 50 and 100, random crop
    (zero padding 4) + horizontal flip.
``fast``
    Meant to reach the paper's reported CIFAR-10 accuracies (ResNet18 94.78 %,
    VGG16 93.63 %) in 30 epochs on one GPU. Reasoning: a short run wastes
    most of a step schedule's epochs at a too-high or too-low rate, so the
    rate rises linearly for 2 epochs (stable start at a large batch) and then
    falls linearly to 0, which is the best-known shape for budgets of a few
    dozen epochs. Batch 512 keeps a GPU busy; peak lr 0.2 is the usual 0.1 per
    256 images scaled linearly; Nesterov momentum 0.9; weight decay 5e-4 (the
    standard CIFAR value; the paper's 5e-3 suits its small lr); label
    smoothing 0.1 (a cheap regulariser worth a few tenths of a percent in
    short runs); crop + flip as in the paper. bf16 autocast, channels-last
    and ``torch.compile`` make the step 2-3x faster on recent GPUs without
    changing the optimisation.
``quick``
    CPU-scale runs of narrow networks (book profile ``quick``), long enough to
    approach converged accuracy rather than to illustrate: 16 epochs of the
    ``fast`` shape (1.6 warm-up epochs, then linear decay to 0) at batch 256,
    peak lr 0.2, Nesterov, label smoothing 0.1, crop padding 2, no dropout,
    whitened stem, dirac-initialised plain stacks, weight average 0.99, bf16
    autocast and channels-last where the CPU has native bf16. The plain VGGs
    underfit at 16 epochs, so VGG11 trains 28 and VGG19 24 (the epochs each
    needed to reach 85 %; see the README's table of what was tried).
``smoke``
    2 epochs, batch 32, peak lr 0.1 decaying linearly, for the smoke profile
    on ``digits`` (about 80 steps); no flips, because digits are not
    mirror-symmetric.

What a recipe's speed-ups become on a device is decided once, by
:func:`acceleration`: bf16 autocast (``use_amp``) runs on CUDA and on CPUs
with native bf16 arithmetic (AVX512-BF16 or AMX; without it bf16 is emulated
and many times slower, so the run stays float32 and says so);
``channels_last`` applies on both; ``torch.compile`` on CUDA only (it gave
nothing on CPU). Test accuracies in the history are measured the way the
model trains; ``final_test_acc`` is measured in float32, the precision the
curves use. On CPU a run is bit-for-bit reproducible from its seed
(including across a resume) on one machine; bf16 and float32 runs differ.
"""

from __future__ import annotations

import math
import pickle
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from modgraph import provenance
from modgraph.data import ArrayDataset, augment_batch
from modgraph.devices import resolve_device
from modgraph.registry import Registry

__all__ = [
    "Recipe",
    "RECIPES",
    "SCHEDULES",
    "OPTIMIZERS",
    "get_recipe",
    "Acceleration",
    "acceleration",
    "cpu_has_native_bf16",
    "resolve_device",
    "train_model",
    "evaluate",
    "measure_throughput",
    "snapshot_path",
    "whiten_stem",
    "dirac_init",
    "RESUME_FILE",
]

RESUME_FILE = "resume.pt"

LrFactor = Callable[[int], float]
SCHEDULES: Registry[Callable[["Recipe", int], LrFactor]] = Registry("schedule")


@dataclass(frozen=True)
class Recipe:
    """A complete training configuration (loss: cross-entropy).

    ``optimizer`` names an :data:`OPTIMIZERS` entry: ``"sgd"`` (``momentum``,
    ``nesterov``, ``weight_decay`` on every parameter) or ``"adamw"``
    (``momentum`` is beta1, beta2 is 0.999; decoupled ``weight_decay`` on the
    weight matrices and kernels only, not on biases, norms or embeddings of
    fewer than two dimensions).

    ``schedule`` names a :data:`SCHEDULES` entry; ``milestones``/``gamma`` serve
    ``multistep``; ``warmup_epochs`` (may be fractional) ramps the rate
    linearly from ~0 in every schedule. ``crop`` pads by ``pad`` pixels and
    crops back; ``flip`` mirrors half the images. ``dropout`` (None: the
    model's own rates) sets the rate of every ``nn.Dropout`` while training;
    the rates are restored afterwards, so the trained model's architecture is
    the model's own (dropout is the identity at evaluation). ``use_amp`` (bf16 autocast),
    ``channels_last`` and ``compile`` are requests that :func:`acceleration`
    grants per device. ``whiten`` initialises the first convolution as a
    whitening of its input patches before the first epoch
    (:func:`whiten_stem`); ``dirac`` initialises the later convolutions as
    partial identities (:func:`dirac_init`). ``ema`` (0: off) keeps an
    exponential moving average of the weights and batch-norm statistics with
    that decay per step (ramped up as ``min(ema, (1 + t) / (10 + t))`` over
    the first steps ``t``); the averaged weights are what is evaluated after
    every epoch, saved as snapshots and returned. ``epochs_by_arch``
    (architecture -> epochs) gives some architectures another number of epochs
    when trained from scratch (:meth:`for_arch`, which the model store uses).
    """

    name: str
    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "multistep"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    crop: bool = True
    pad: int = 4
    flip: bool = True
    dropout: float | None = None
    use_amp: bool = False
    channels_last: bool = False
    compile: bool = False
    whiten: bool = False
    dirac: bool = False
    ema: float = 0.0
    eval_batch_size: int = 1000
    epochs_by_arch: tuple[tuple[str, int], ...] = ()
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        pairs = self.epochs_by_arch.items() if isinstance(self.epochs_by_arch, Mapping) else self.epochs_by_arch
        object.__setattr__(self, "epochs_by_arch", tuple(sorted((str(a).lower(), n) for a, n in pairs)))
        SCHEDULES.get(self.schedule)
        OPTIMIZERS.get(self.optimizer)
        problems = [
            msg for bad, msg in [
                (not isinstance(self.epochs, int) or self.epochs < 1,
                 f"epochs must be an int >= 1, got {self.epochs!r}"),
                (not isinstance(self.batch_size, int) or self.batch_size < 1,
                 f"batch_size must be an int >= 1, got {self.batch_size!r}"),
                (not self.lr > 0, f"lr must be > 0, got {self.lr}"),
                (not 0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
                (self.nesterov and self.momentum == 0, "nesterov needs momentum > 0"),
                (self.nesterov and self.optimizer != "sgd", f"nesterov applies to sgd only, not {self.optimizer!r}"),
                (self.weight_decay < 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
                (not 0 <= self.warmup_epochs < self.epochs,
                 f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs}"),
                (not 0 <= self.ema < 1, f"ema must be in [0, 1) (0: off), got {self.ema}"),
                (not 0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
                (self.pad < 0, f"pad must be >= 0, got {self.pad}"),
                (self.dropout is not None and not 0 <= self.dropout < 1,
                 f"dropout must be None or in [0, 1), got {self.dropout}"),
                (not 0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
                (any(not 0 < m < self.epochs for m in self.milestones),
                 f"milestones must lie in (0, epochs={self.epochs}), got {self.milestones}"),
                (self.eval_batch_size < 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
                (any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for _, n in self.epochs_by_arch),
                 f"epochs_by_arch must map architecture -> int >= 1, got {dict(self.epochs_by_arch)}"),
            ] if bad
        ]
        if problems:
            raise ValueError(f"recipe {self.name!r}: " + "; ".join(problems))
        if self.epochs_by_arch:
            from modgraph.models import MODELS

            for arch, _ in self.epochs_by_arch:
                MODELS.get(arch)

    def with_epochs(self, epochs: int) -> "Recipe":
        """This recipe over ``epochs`` epochs: milestones and warm-up scale in proportion.

        Scaled milestones are rounded and kept inside ``1..epochs-1`` (coinciding
        ones multiply, so no decay is lost); a 1-epoch run has none.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
        if epochs == self.epochs:
            return self
        scale = epochs / self.epochs
        milestones = tuple(min(max(1, round(m * scale)), epochs - 1) for m in self.milestones) if epochs > 1 else ()
        return replace(self, epochs=epochs, milestones=milestones, warmup_epochs=self.warmup_epochs * scale)

    def for_arch(self, arch: str, epochs: int | None = None) -> "Recipe":
        """This recipe as it trains ``arch``: over ``epochs`` epochs, else ``arch``'s entry of ``epochs_by_arch``,
        else its own (:meth:`with_epochs`); the resolved recipe has no ``epochs_by_arch`` left."""
        plain = replace(self, epochs_by_arch=())
        return plain.with_epochs(epochs if epochs is not None else dict(self.epochs_by_arch).get(arch.lower(),
                                                                                              self.epochs))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples become lists), the description left out.

        ``optimizer`` is left out when it is ``"sgd"``, ``whiten``, ``dirac`` and
        ``ema`` when they are off, and ``epochs_by_arch`` when empty, so recipes written before those fields
        existed keep their identity (and their stored models).
        """
        out = asdict(self)
        out.pop("description")
        if out.pop("epochs_by_arch"):
            out["epochs_by_arch"] = dict(self.epochs_by_arch)
        if out["optimizer"] == "sgd":
            out.pop("optimizer")
        for flag in ("whiten", "dirac", "ema"):
            if not out[flag]:
                out.pop(flag)
        out["milestones"] = list(self.milestones)
        return out


def _warmup(recipe: Recipe, steps_per_epoch: int) -> tuple[int, LrFactor]:
    warm = int(round(recipe.warmup_epochs * steps_per_epoch))
    return warm, (lambda s: (s + 1) / warm) if warm else (lambda s: 1.0)


def _multistep(recipe: Recipe, steps_per_epoch: int) -> LrFactor:
    warm, ramp = _warmup(recipe, steps_per_epoch)

    def factor(step: int) -> float:
        drops = sum(step // steps_per_epoch >= m for m in recipe.milestones)
        return recipe.gamma ** drops * (ramp(step) if step < warm else 1.0)

    return factor


def _linear(recipe: Recipe, steps_per_epoch: int) -> LrFactor:
    warm, ramp = _warmup(recipe, steps_per_epoch)
    total = recipe.epochs * steps_per_epoch
    return lambda step: ramp(step) if step < warm else (total - step) / (total - warm)


def _cosine(recipe: Recipe, steps_per_epoch: int) -> LrFactor:
    warm, ramp = _warmup(recipe, steps_per_epoch)
    total = recipe.epochs * steps_per_epoch
    return lambda step: ramp(step) if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))


SCHEDULES.register("multistep", _multistep)
SCHEDULES.register("linear", _linear)
SCHEDULES.register("cosine", _cosine)

def _sgd(params: list[nn.Parameter], recipe: Recipe) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                           nesterov=recipe.nesterov)


def _adamw(params: list[nn.Parameter], recipe: Recipe) -> torch.optim.Optimizer:
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": recipe.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=recipe.lr, betas=(recipe.momentum, 0.999))


OPTIMIZERS: Registry[Callable[[list[nn.Parameter], "Recipe"], torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.register("sgd", _sgd)
OPTIMIZERS.register("adamw", _adamw)

RECIPES: Registry[Recipe] = Registry("recipe")
for _recipe in (
    Recipe("paper", epochs=150, batch_size=256, lr=0.01, momentum=0.9, weight_decay=5e-3, schedule="multistep",
           milestones=(50, 100), gamma=0.1, description="the paper's recipe: 150 epochs, x0.1 at 50 and 100"),
    Recipe("fast", epochs=30, batch_size=512, lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
           schedule="linear", warmup_epochs=2, label_smoothing=0.1, use_amp=True, channels_last=True,
           compile=True, whiten=True, dirac=True, ema=0.99,
           description="30 epochs, linear warm-up then linear decay, patch-whitened stem, identity-initialised "
                       "plain stacks, weight averaging, bf16 on GPU"),
    Recipe("quick", epochs=16, batch_size=256, lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
           schedule="linear", warmup_epochs=1.6, label_smoothing=0.1, pad=2, dropout=0.0, use_amp=True,
           channels_last=True, whiten=True, dirac=True, ema=0.99, epochs_by_arch={"vgg11": 28, "vgg19": 24},
           description="CPU-scale, narrow networks: 16 epochs (VGG11 28, VGG19 24), light augmentation, no dropout, "
                       "patch-whitened stem, identity-initialised plain stacks, weight averaging, bf16 on CPUs that "
                       "have it"),
    Recipe("smoke", epochs=2, batch_size=32, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
           schedule="linear", flip=False, description="smoke profile on digits"),
    Recipe("vit_fast", epochs=100, batch_size=512, lr=1e-3, optimizer="adamw", weight_decay=0.05,
           schedule="cosine", warmup_epochs=5, label_smoothing=0.1, use_amp=True, channels_last=False,
           description="Vision Transformers on one GPU: AdamW, 5 warm-up epochs, cosine decay, bf16"),
    Recipe("vit_quick", epochs=10, batch_size=256, lr=2e-3, optimizer="adamw", weight_decay=0.05,
           schedule="cosine", warmup_epochs=1, label_smoothing=0.1, pad=2,
           description="Vision Transformers on a CPU: AdamW, 1 warm-up epoch, cosine decay, float32"),
    Recipe("vit_smoke", epochs=2, batch_size=32, lr=1e-3, optimizer="adamw", weight_decay=0.05,
           schedule="linear", flip=False, description="Vision Transformers, smoke profile on digits"),
):
    RECIPES.register(_recipe.name, _recipe)


def get_recipe(name: str) -> Recipe:
    """The registered recipe ``name``; ``ValueError`` listing the valid names."""
    return RECIPES.get(name)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), so that bf16 autocast speeds training up."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is not None for probe in probes):
        return any(bool(probe()) for probe in probes if probe is not None)
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Acceleration:
    """What a recipe's speed-up requests become on one device; ``notes`` say what was refused and why."""

    amp: bool
    channels_last: bool
    compile: bool
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"bf16_autocast": self.amp, "channels_last": self.channels_last, "compile": self.compile,
                "notes": list(self.notes)}


def acceleration(recipe: Recipe, device: torch.device, *, native_bf16: bool | None = None) -> Acceleration:
    """The speed-ups of ``recipe`` that run on ``device``.

    bf16 autocast: on CUDA when the GPU supports bf16, on CPU when
    ``native_bf16`` (default :func:`cpu_has_native_bf16`); channels-last: on
    CUDA and CPU; ``torch.compile``: on CUDA only.
    """
    notes = []
    if device.type == "cuda":
        amp = recipe.use_amp and torch.cuda.is_bf16_supported()
        if recipe.use_amp and not amp:
            notes.append("bf16 autocast off: this GPU does not support bf16; training in float32")
        return Acceleration(amp, recipe.channels_last, recipe.compile, tuple(notes))
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    amp = recipe.use_amp and native
    if recipe.use_amp and not amp:
        notes.append("bf16 autocast off: this CPU has no native bf16 (AVX512-BF16 or AMX), where bf16 is emulated "
                     "and slower than float32; training in float32")
    if recipe.compile:
        notes.append("torch.compile off: it runs on CUDA only (no gain measured on CPU)")
    return Acceleration(amp, recipe.channels_last, False, tuple(notes))


WHITEN_IMAGES = 5000
"""How many training images (the first ones) :func:`train_model` gives :func:`whiten_stem`."""


class _Captured(Exception):
    def __init__(self, tensor: torch.Tensor) -> None:
        super().__init__()
        self.tensor = tensor


def _input_of(model: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``module`` receives when ``model`` runs on ``x`` (the rest of the forward pass is skipped)."""
    def grab(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        raise _Captured(args[0].detach())

    handle = module.register_forward_pre_hook(grab)
    try:
        model(x)
    except _Captured as got:
        return got.tensor
    finally:
        handle.remove()
    raise ValueError("the model's forward pass never reached its first convolution")


@torch.no_grad()
def whiten_stem(model: nn.Module, images: torch.Tensor, *, eps: float = 5e-4, batch_size: int = 500) -> nn.Conv2d:
    """Initialise the first 3-channel convolution of ``model`` as a whitening of its input patches.

    ``images``: float ``(B, 3, H, W)`` as the model takes them. The patches
    the convolution sees (after whatever precedes it, e.g. the model's
    normalisation; ``d = 3 * kh * kw`` values each) give a covariance
    ``(d, d)``; its top ``m = min(out_channels // 2, d)`` eigenvectors, each
    divided by ``sqrt(eigenvalue + eps)``, and their negatives become the
    first ``2m`` filters (airbench's patch-whitening initialisation); any
    further filters keep their initialisation and a bias is zeroed. The
    filters stay trainable. Returns the convolution; ``ValueError`` when the
    model has none that takes 3 channels.
    """
    if images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (B, 3, H, W) batch, got {tuple(images.shape)}")
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3 and m.groups == 1),
                None)
    if conv is None:
        raise ValueError(f"{type(model).__name__} has no convolution on 3 input channels to whiten")
    was_training = model.training
    model.eval()
    d = 3 * conv.kernel_size[0] * conv.kernel_size[1]
    total, outer, count = torch.zeros(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64), 0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(conv.weight.device)
        inputs = _input_of(model, conv, x.contiguous(memory_format=torch.channels_last)
                           if conv.weight.is_contiguous(memory_format=torch.channels_last) else x)
        patches = F.unfold(inputs.float(), conv.kernel_size, conv.dilation, conv.padding, conv.stride)
        patches = patches.transpose(1, 2).reshape(-1, d).double().cpu()
        total += patches.sum(0)
        outer += patches.T @ patches
        count += len(patches)
    model.train(was_training)
    mean = total / count
    values, vectors = torch.linalg.eigh(outer / count - torch.outer(mean, mean))
    m = min(conv.out_channels // 2, d)
    top = (vectors[:, -m:].flip(1) / torch.sqrt(values[-m:].flip(0).clamp(min=0) + eps)).T
    filters = torch.cat([top, -top]).reshape(2 * m, 3, *conv.kernel_size)
    conv.weight[:2 * m] = filters.to(conv.weight.dtype)
    if conv.bias is not None:
        conv.bias.zero_()
    return conv


@torch.no_grad()
def dirac_init(model: nn.Module) -> int:
    """Make every stride-1, odd-kernel convolution of ``model`` past its input an identity on its first channels.

    Each ``nn.Conv2d`` with ``in_channels != 3``, one group, stride 1 and an
    odd square kernel gets ``torch.nn.init.dirac_`` on its first
    ``min(in_channels, out_channels)`` filters (the rest keep their
    initialisation, a bias is zeroed), so a deep plain stack starts close to
    passing its input through (airbench's initialisation). Convolutions inside
    a residual block (a module with a ``shortcut``) keep theirs: the block's
    skip path already passes its input through. Returns how many convolutions
    changed.
    """
    residual = {id(m) for block in model.modules() if hasattr(block, "shortcut") for m in block.modules()}
    changed = 0
    for conv in model.modules():
        if (isinstance(conv, nn.Conv2d) and id(conv) not in residual and conv.in_channels != 3 and conv.groups == 1
                and conv.stride == (1, 1) and conv.kernel_size[0] == conv.kernel_size[1]
                and conv.kernel_size[0] % 2 == 1):
            nn.init.dirac_(conv.weight[:min(conv.in_channels, conv.out_channels)])
            if conv.bias is not None:
                conv.bias.zero_()
            changed += 1
    return changed


def snapshot_path(directory: Path, epoch: int) -> Path:
    """``<directory>/snapshots/epoch_XXX.pt``: the weights after ``epoch`` epochs (0: initialisation)."""
    return Path(directory) / "snapshots" / f"epoch_{epoch:03d}.pt"


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _uint8_tensors(data: ArrayDataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(data.images).to(device).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(data.labels).to(device)


class _Stepper:
    """One SGD step of ``recipe`` on a uint8 batch: augmentation, autocast, loss, update."""

    def __init__(self, model: nn.Module, recipe: Recipe, steps_per_epoch: int, device: torch.device,
                 accel: Acceleration | None = None) -> None:
        self.recipe, self.device = recipe, device
        self.accel = acceleration(recipe, device) if accel is None else accel
        self.amp, self.channels_last = self.accel.amp, self.accel.channels_last
        model.to(device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.net = torch.compile(model) if self.accel.compile else model
        self.optimizer = OPTIMIZERS.get(recipe.optimizer)(list(model.parameters()), recipe)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, SCHEDULES.get(recipe.schedule)(recipe, steps_per_epoch))
        self.average: dict[str, torch.Tensor] | None = None
        self.updates = 0

    def _update_average(self) -> None:
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.updates += 1
        decay = min(self.recipe.ema, self.updates / (self.updates + 9))
        for key, value in self.model.state_dict().items():
            if value.is_floating_point():
                self.average[key].lerp_(value.detach(), 1.0 - decay)
            else:
                self.average[key].copy_(value)

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """Inside: the model holds the averaged weights (nothing changes before the first ``ema`` update)."""
        if self.average is None:
            yield
            return
        raw = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.average)
        try:
            yield
        finally:
            self.model.load_state_dict(raw)

    def average_state(self) -> dict[str, Any]:
        """What a resume checkpoint needs of the average (empty before the first ``ema`` update)."""
        if self.average is None:
            return {}
        return {"average": {k: v.cpu() for k, v in self.average.items()}, "average_updates": self.updates}

    def load_average(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`average_state` (nothing when ``state`` holds no average)."""
        if "average" in state:
            current = self.model.state_dict()
            self.average = {k: v.to(current[k].device) for k, v in state["average"].items()}
            self.updates = int(state["average_updates"])

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the memory format the model runs in."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def step(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Train on uint8 ``x`` ``(B, 3, H, W)``, labels ``y`` ``(B,)``; returns summed loss and #correct."""
        r = self.recipe
        x = x.float().div_(255.0)
        if r.crop or r.flip:
            x = augment_batch(x, generator, pad=r.pad if r.crop else 0, flip=r.flip)
        x = self.layout(x)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.net(x)
            loss = F.cross_entropy(out.float(), y, label_smoothing=r.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.recipe.ema:
            self._update_average()
        return loss.detach() * y.numel(), (out.argmax(1) == y).sum()


def _rng_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_pair(train: ArrayDataset, test: ArrayDataset) -> None:
    if train.num_classes != test.num_classes or train.image_size != test.image_size:
        raise ValueError(f"train and test sets disagree: {train.num_classes} vs {test.num_classes} classes, "
                         f"images {train.image_size} vs {test.image_size}")
    if len(train) == 0 or len(test) == 0:
        raise ValueError("train and test sets must not be empty")


def _check_snapshots(snapshot_epochs: Iterable[int], epochs: int) -> tuple[int, ...]:
    snaps = tuple(sorted({int(e) for e in snapshot_epochs}))
    bad = [e for e in snaps if not 0 <= e <= epochs]
    if bad:
        raise ValueError(f"snapshot epochs {bad} outside 0..{epochs} (0 = initialisation)")
    return snaps


def _state_dict_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def train_model(model: nn.Module, train: ArrayDataset, test: ArrayDataset, recipe: Recipe, *, seed: int,
                device: str | torch.device | None = None, checkpoint_dir: str | Path | None = None,
                snapshot_epochs: Iterable[int] = (), snapshot_meta: Mapping[str, Any] | None = None,
                stop_after_epoch: int | None = None, progress: bool = True, initialise: bool = True) -> dict[str, Any]:
    """Train ``model`` in place with ``recipe``; returns the metrics (also in every checkpoint).

    Data stay on ``device`` as uint8 tensors. Epoch ``e`` shuffles, augments
    and seeds the global RNG (dropout) from ``(seed, e)``, so a run is a
    function of its seed. With ``checkpoint_dir`` a resume checkpoint
    (``resume.pt``: model, optimiser, scheduler, epoch, metrics) is written
    atomically after every epoch and picked up on the next call, and the
    weights after each epoch in ``snapshot_epochs`` (0 = before training) go
    to :func:`snapshot_path` together with ``snapshot_meta``.
    ``stop_after_epoch`` ends the call early after that epoch (the run can be
    resumed). ``initialise``: whether the recipe's initialisations (``whiten``,
    ``dirac``) apply; ``False`` for a model that starts from trained weights
    (fine-tuning), whose weights they would overwrite. Metrics: ``history`` (per epoch: train loss/accuracy, test
    loss/accuracy, lr, seconds, images/s), ``final_test_acc`` (fraction),
    ``final_test_loss``, ``wall_time_s``, ``images_per_s``, ``finished``.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    dev = resolve_device(device)
    _check_pair(train, test)
    snaps = _check_snapshots(snapshot_epochs, recipe.epochs)
    if snaps and checkpoint_dir is None:
        raise ValueError("snapshot_epochs need a checkpoint_dir to write the snapshots to")
    if stop_after_epoch is not None and not 1 <= stop_after_epoch <= recipe.epochs:
        raise ValueError(f"stop_after_epoch must be in 1..{recipe.epochs}, got {stop_after_epoch}")
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    steps_per_epoch = max(1, len(train) // recipe.batch_size)
    stepper = _Stepper(model, recipe, steps_per_epoch, dev)
    if recipe.use_amp and not stepper.amp:
        warnings.warn(f"recipe {recipe.name!r}: " + "; ".join(stepper.accel.notes), stacklevel=2)
    meta = dict(snapshot_meta or {})
    identity = {"recipe": recipe.to_dict(), "seed": int(seed), "n_train": len(train)}
    start, history = _resume(folder, stepper, identity, snaps, dev) if folder else (0, [])
    x_train, y_train = _uint8_tensors(train, dev)
    x_test, y_test = _uint8_tensors(test, dev)
    if start == 0 and initialise and recipe.dirac:
        dirac_init(model)
    if start == 0 and initialise and recipe.whiten:
        whiten_stem(model, x_train[:WHITEN_IMAGES].float().div_(255.0))
    if start == 0 and 0 in snaps:
        _save_snapshot(folder, 0, model, meta)
    rates = _set_dropout(model, recipe.dropout)
    n_train = len(train)
    last = recipe.epochs if stop_after_epoch is None else stop_after_epoch
    bar = tqdm(total=recipe.epochs, initial=start, desc=f"train {recipe.name}", unit="epoch", disable=not progress)
    for epoch in range(start, last):
        t0 = time.perf_counter()
        generator = torch.Generator().manual_seed(_epoch_seed(int(seed), epoch))
        order = torch.randperm(n_train, generator=generator).to(dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        lr = stepper.optimizer.param_groups[0]["lr"]
        model.train()
        with torch.random.fork_rng(devices=_rng_devices(dev)):
            torch.manual_seed(_epoch_seed(int(seed), epoch))
            for i in tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}", leave=False, disable=not progress):
                idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
                batch_loss, batch_correct = stepper.step(x_train[idx], y_train[idx], generator)
                loss_sum += batch_loss
                correct += batch_correct
        _sync(dev)
        train_s = time.perf_counter() - t0
        seen = min(n_train, steps_per_epoch * recipe.batch_size)
        with stepper.averaged():
            test_acc, test_loss = _evaluate_uint8(stepper, x_test, y_test, recipe.eval_batch_size)
            if folder is not None and epoch + 1 in snaps:
                _save_snapshot(folder, epoch + 1, model, meta)
        record = {
            "epoch": epoch + 1, "lr": lr, "train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen,
            "test_loss": test_loss, "test_acc": test_acc, "train_s": train_s,
            "epoch_s": time.perf_counter() - t0, "images_per_s": seen / train_s,
        }
        history.append(record)
        if folder is not None:
            provenance.atomic_torch_save({
                **identity, "epoch": epoch + 1, "history": history, "model": _state_dict_cpu(model),
                "optimizer": stepper.optimizer.state_dict(), "scheduler": stepper.scheduler.state_dict(),
                **stepper.average_state(),
            }, folder / RESUME_FILE)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", acc=f"{record['train_acc']:.3f}",
                        test=f"{test_acc:.3f}", refresh=False)
        bar.update(1)
    bar.close()
    _restore_dropout(rates)
    if stepper.average is not None:
        model.load_state_dict(stepper.average)
    model.eval()
    summary = {**_summary(history, recipe, int(seed), dev, stepper.accel), "initialised": bool(initialise)}
    if stepper.channels_last:
        model.to(memory_format=torch.contiguous_format)
    if stepper.amp and history:
        summary["final_test_acc"], summary["final_test_loss"] = _evaluate_uint8(
            stepper, x_test, y_test, recipe.eval_batch_size, amp=False)
    return summary


def _set_dropout(model: nn.Module, rate: float | None) -> list[tuple[nn.Dropout, float]]:
    """Set every ``nn.Dropout`` of ``model`` to ``rate`` (None: leave them); returns their former rates."""
    layers = [m for m in model.modules() if isinstance(m, nn.Dropout)] if rate is not None else []
    former = [(m, m.p) for m in layers]
    for m in layers:
        m.p = rate
    return former


def _restore_dropout(former: list[tuple[nn.Dropout, float]]) -> None:
    for module, rate in former:
        module.p = rate


def _summary(history: list[dict[str, Any]], recipe: Recipe, seed: int, device: torch.device,
             accel: Acceleration) -> dict[str, Any]:
    train_s = sum(h["train_s"] for h in history)
    images = sum(h["images_per_s"] * h["train_s"] for h in history)
    done = history[-1]["epoch"] if history else 0
    return {
        "recipe": recipe.to_dict(), "seed": seed, "device": str(device), "acceleration": accel.to_dict(),
        "epochs_completed": done, "finished": done == recipe.epochs, "history": history,
        "final_test_acc": history[-1]["test_acc"] if history else None,
        "final_test_loss": history[-1]["test_loss"] if history else None,
        "wall_time_s": sum(h["epoch_s"] for h in history), "train_time_s": train_s,
        "images_per_s": images / train_s if train_s else None,
    }


def _resume(folder: Path, stepper: _Stepper, identity: dict[str, Any], snaps: tuple[int, ...],
            device: torch.device) -> tuple[int, list[dict[str, Any]]]:
    """Load ``folder/resume.pt`` into ``stepper``: its epoch and history (``0, []`` when there is none to use)."""
    path = folder / RESUME_FILE
    if not path.exists():
        return 0, []
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        epoch, history = int(state["epoch"]), list(state["history"])
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as err:
        warnings.warn(f"unreadable resume checkpoint {path} ({type(err).__name__}: {err}); training from "
                      f"scratch", stacklevel=3)
        return 0, []
    theirs = {k: state.get(k) for k in identity}
    if theirs != identity:
        raise ValueError(f"resume checkpoint {path} belongs to another run ({theirs}), not {identity}; "
                         f"delete it or use another checkpoint_dir")
    missing = [e for e in snaps if e <= epoch and not snapshot_path(folder, e).exists()]
    if missing:
        warnings.warn(f"resume checkpoint {path} is at epoch {epoch} but snapshots {missing} were never saved; "
                      f"training from scratch to take them", stacklevel=3)
        return 0, []
    stepper.model.load_state_dict(state["model"])
    stepper.optimizer.load_state_dict(state["optimizer"])
    stepper.scheduler.load_state_dict(state["scheduler"])
    stepper.load_average(state)
    return epoch, history


def _save_snapshot(folder: Path, epoch: int, model: nn.Module, meta: dict[str, Any]) -> None:
    provenance.atomic_torch_save({"state_dict": _state_dict_cpu(model), "epoch": epoch, **meta},
                                 snapshot_path(folder, epoch))


@torch.no_grad()
def _evaluate_uint8(stepper: _Stepper, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                    amp: bool | None = None) -> tuple[float, float]:
    """Accuracy and mean loss on uint8 ``x``; ``amp`` (default: as the stepper trains) enables bf16 autocast."""
    amp = stepper.amp if amp is None else amp
    was_training = stepper.model.training
    stepper.model.eval()
    loss = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, x.shape[0], batch_size):
        xb, yb = stepper.layout(x[start:start + batch_size].float().div_(255.0)), y[start:start + batch_size]
        with torch.autocast(stepper.device.type, dtype=torch.bfloat16, enabled=amp):
            out = stepper.net(xb)
        loss += F.cross_entropy(out.float(), yb, reduction="sum").double()
        correct += (out.argmax(1) == yb).sum()
    stepper.model.train(was_training)
    return correct.item() / x.shape[0], loss.item() / x.shape[0]


@torch.no_grad()
def evaluate(model: nn.Module, data: ArrayDataset | tuple[torch.Tensor, torch.Tensor], batch_size: int = 1000,
             device: str | torch.device | None = None) -> tuple[float, float]:
    """Test accuracy (fraction in ``[0, 1]``) and mean cross-entropy of ``model`` on ``data``.

    ``data``: an :class:`ArrayDataset` or ``(images float (N, 3, H, W) in [0, 1], labels int64 (N,))``.
    ``device`` defaults to where the model's parameters are. The model's train/eval mode is restored.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        param = next(iter(model.parameters()), None)
        dev = param.device if param is not None else torch.device("cpu")
    else:
        dev = resolve_device(device)
    x, y = data.tensors() if isinstance(data, ArrayDataset) else data
    if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"need images (N, C, H, W) and labels (N,) with N > 0, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size].to(dev)
        yb = y[start:start + batch_size].to(dev)
        out = model(xb)
        loss += F.cross_entropy(out.float(), yb, reduction="sum").item()
        correct += int((out.argmax(1) == yb).sum().item())
    model.train(was_training)
    return correct / x.shape[0], loss / x.shape[0]


def measure_throughput(model: nn.Module, recipe: Recipe, *, image_size: tuple[int, int] = (32, 32),
                       num_classes: int = 10, batch_size: int | None = None, steps: int = 20, warmup: int = 3,
                       device: str | torch.device | None = None, seed: int = 0,
                       accel: Acceleration | None = None) -> dict[str, Any]:
    """Training images/s of ``recipe``'s step (augmentation included) on random uint8 images.

    Updates ``model`` in place. ``warmup`` untimed steps come first (they
    absorb ``torch.compile`` and cuDNN autotuning). ``accel`` overrides what
    :func:`acceleration` grants (to time fp32 against bf16 on one device).
    Returns ``images_per_s``, ``seconds``, ``steps``, ``batch_size`` and
    ``acceleration``.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got {steps}, {warmup}")
    dev = resolve_device(device)
    bs = batch_size or recipe.batch_size
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (bs, 3, *image_size), generator=generator, dtype=torch.uint8).to(dev)
    y = torch.randint(0, num_classes, (bs,), generator=generator).to(dev)
    stepper = _Stepper(model, recipe, max(1, steps + warmup), dev, accel)
    model.train()
    for _ in range(warmup):
        stepper.step(x, y, generator)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        stepper.step(x, y, generator)
    _sync(dev)
    seconds = time.perf_counter() - t0
    model.eval()
    return {"images_per_s": bs * steps / seconds, "seconds": seconds, "steps": steps, "batch_size": bs,
            "acceleration": stepper.accel.to_dict()}
