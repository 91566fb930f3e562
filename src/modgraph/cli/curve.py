"""``python -m modgraph curve``: the modularity curve of one trained model, printed and saved as JSON."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modgraph import paths, provenance
from modgraph.cli.options import add_curve_arguments, curve_settings
from modgraph.readout import TOKENS

DESCRIPTION = """\
Compute the modularity curve of a trained model: for `--repeats` disjoint random
samples of `-n` images, link every image to its `-k` most similar images in each
layer's feature space and measure the modularity of the class partition. The
model is a modgraph architecture (`--arch`) from `--checkpoint` or, without it,
from the model store (trained on demand from --recipe/--epochs/--width/--seed),
or any network (`--model`): torchvision:<name>, timm:<name> or
package.module:callable (a factory importable from the working directory, called
with num_classes= when it takes it), with `--weights` from a state-dict file or
random. Prints the curve and writes it (values, mean, std and metadata) as JSON.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``curve`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "curve", help="modularity curve of a trained model", description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    model = parser.add_argument_group("model")
    which = model.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", help="modgraph architecture name (modgraph.models.list_models())")
    which.add_argument("--model", metavar="SOURCE",
                       help="any network: torchvision:<name>, timm:<name> (the timm extra) or package.module:callable "
                            "(importable from the working directory; called with num_classes= when it takes it)")
    model.add_argument("--weights", metavar="PATH|none",
                       help="--model only: state-dict file (torch.load weights_only=True; a store checkpoint's "
                            "state_dict also works), or none for random initial weights. Default: none")
    model.add_argument("--normalize", default="auto", choices=("auto", "dataset", "imagenet", "none"),
                       help="--model only: how its pixel-space [0, 1] input is normalised. auto: ImageNet mean/std "
                            "for torchvision, the pretrained_cfg's for timm, none for a factory (it receives "
                            "pixel-space input)")
    model.add_argument("--dataset", required=True, help="data set name (modgraph.data.DATASETS); sets the classes")
    source = model.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path,
                        help="weights file: {'state_dict': ..., 'spec': ...} as the store saves it, or a bare "
                             "state dict; loaded with torch.load(weights_only=True). Default: use the store")
    source.add_argument("--recipe", help="training recipe of the stored model (modgraph.train.RECIPES); "
                                         "default: the store's")
    model.add_argument("--epochs", type=int, help="training epochs of the stored model; default: the recipe's")
    model.add_argument("--width", type=float,
                       help="channel width multiplier; default: 1 for the store, the one --checkpoint records")
    model.add_argument("--seed", type=int, help="training seed of the stored model; default: the store's")
    curve = add_curve_arguments(parser, "curve")
    curve.add_argument("--layers", help="comma-separated module names or globs (* does not cross dots), e.g. "
                                        "'encoder.layers.*' or 'layer?.*'; default: the model family's layers")
    curve.add_argument("--tokens", choices=TOKENS.names(),
                       help="how a (B, T, D) token sequence becomes one row per image; default flatten for "
                            "every model (each position's features, as the paper reads a conv layer)")
    curve.add_argument("--image-size", type=int,
                       help="resize images (bilinear, per batch) to this square size first, e.g. 224 for "
                            "ImageNet models; default: as stored")
    curve.add_argument("--split", default="test", choices=("train", "test"), help="data split to sample from")
    runtime = parser.add_argument_group("run")
    runtime.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N; "
                                                          "also where the store trains a missing model")
    runtime.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    runtime.add_argument("--out", type=Path,
                     help="JSON file to write; default: results/curves/<arch>_<dataset>_<settings>.json")
    runtime.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_curve)
    return parser


def run_curve(args: argparse.Namespace) -> int:
    """Compute, print and save the curve ``args`` describe; every cheap check comes before any model work."""
    from modgraph.curve import modularity_curve
    from modgraph.data import load_dataset, sample_indices
    from modgraph.devices import resolve_device

    from modgraph.models.external import PixelInput

    _check(args)
    layers = _layer_list(args.layers)
    external = _external_source(args) if args.model else None
    if external is None and layers is not None:
        _check_arch_layers(args, layers)
    device = resolve_device(args.device)
    out = args.out or paths.results_dir() / "curves" / f"{_stem(args)}.json"
    provenance.check_writable(out)
    data = load_dataset(args.dataset, args.split, progress=not args.quiet)
    sample_indices(len(data), args.n, args.repeats, args.sample_seed)
    if external is not None:
        model, meta, tokens = _external_model(args, external, data, layers)
    else:
        model, source = _checkpoint_model(args, data, device) if args.checkpoint else _stored_model(args, device)
        meta = {"model": args.arch, "arch": args.arch, "dataset": args.dataset, "split": args.split, **source}
        tokens = args.tokens
        if args.image_size is not None:
            model, meta = PixelInput(model, image_size=args.image_size), {**meta, "image_size": args.image_size}
    images, labels = data.tensors()
    curve = modularity_curve(model, images, labels, curve_settings(args), layers=layers, tokens=tokens,
                             batch_size=args.batch_size, device=device, meta=meta, progress=not args.quiet)
    curve.to_json(out)
    if external is not None and args.weights in (None, "none"):
        print(f"WARNING: {args.model} has random initial weights (--weights none): this is the curve of an "
              "untrained network")
    print(curve.table())
    print(f"wrote {out}")
    return 0


def _check(args: argparse.Namespace) -> None:
    """Reject inconsistent options before anything is loaded."""
    from modgraph.models import MODELS
    from modgraph.models.taps import TAPS

    minimums = (("-n", "n", 2), ("-k", "k", 1), ("--repeats", "repeats", 1), ("--batch-size", "batch_size", 1))
    for flag, name, low in minimums:
        if getattr(args, name) < low:
            raise ValueError(f"{flag} must be >= {low}, got {getattr(args, name)}")
    if args.k >= args.n:
        raise ValueError(f"-k must be smaller than -n (each image needs k other images), got k={args.k}, n={args.n}")
    if args.width is not None and not args.width > 0:
        raise ValueError(f"--width must be > 0, got {args.width}")
    if args.image_size is not None and args.image_size < 1:
        raise ValueError(f"--image-size must be >= 1, got {args.image_size}")
    TAPS.get(args.tap)
    if args.model is not None:
        stray = [f"--{name}" for name in ("checkpoint", "recipe", "epochs", "width", "seed")
                 if getattr(args, name) is not None]
        if stray:
            raise ValueError(f"{', '.join(stray)} describe a modgraph model (--arch) and do not apply with --model")
        return
    MODELS.get(args.arch)
    misplaced = [flag for flag, given in (("--weights", args.weights is not None),
                                          ("--normalize", args.normalize != "auto")) if given]
    if misplaced:
        raise ValueError(f"{', '.join(misplaced)} apply to --model; an --arch model comes from --checkpoint or "
                         "the store and normalises its own input")
    if args.checkpoint is not None:
        stray = [f"--{name}" for name in ("epochs", "seed") if getattr(args, name) is not None]
        if stray:
            raise ValueError(f"{', '.join(stray)} describe a stored model and do not apply with --checkpoint")


def _layer_list(text: str | None) -> list[str] | None:
    """``--layers`` as a list of names; None without it."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--layers names no layer: {text!r}")
    return names


def _check_arch_layers(args: argparse.Namespace, layers: list[str]) -> None:
    """``--layers`` checked on an untrained ``--arch`` model before any data or training."""
    from modgraph.models import create_model
    from modgraph.selection import select_layers

    select_layers(create_model(args.arch, width=args.width or 1.0), layers, args.tap)


@dataclasses.dataclass(frozen=True)
class _External:
    """A checked ``--model`` source and the state dict of its ``--weights`` (None: random weights)."""

    source: Any
    state: dict | None
    weights: str


def _external_source(args: argparse.Namespace) -> _External:
    """The ``--model`` source and ``--weights`` file, checked before any data is loaded."""
    from modgraph.sources import check_source, parse_source, read_weights

    source = parse_source(args.model)
    check_source(source)
    weights = None if args.weights in (None, "none") else Path(args.weights).expanduser()
    return _External(source, None if weights is None else read_weights(weights),
                     "none" if weights is None else str(weights))


def _external_model(args: argparse.Namespace, external: _External, data: Any,
                    layers: list[str] | None) -> tuple[nn.Module, dict[str, Any], str]:
    """The ``--model`` network with its weights behind its input adapter, the curve meta and the token choice.

    Built once the data set (and so its class count) is known; its layers are checked before any forward pass.
    """
    from modgraph.models.external import PixelInput
    from modgraph.models.layers import IMAGENET_MEAN, IMAGENET_STD
    from modgraph.readout import DEFAULT_TOKENS
    from modgraph.selection import select_layers
    from modgraph.sources import build_network, input_statistics, load_weights

    net = build_network(external.source, data.num_classes)
    if external.state is not None:
        load_weights(net, external.state, Path(external.weights), external.source)
    select_layers(net, layers, args.tap)
    statistics = {"auto": input_statistics(external.source, net), "dataset": (data.mean, data.std),
                  "imagenet": (IMAGENET_MEAN, IMAGENET_STD), "none": None}[args.normalize]
    mean, std = (None, None) if statistics is None else statistics
    model = PixelInput(net, mean, std, args.image_size)
    tokens = args.tokens or DEFAULT_TOKENS
    normalize = "none" if statistics is None else {"mean": list(mean), "std": list(std)}
    meta = {"model": str(external.source), "source": str(external.source), "weights": external.weights,
            "dataset": args.dataset, "split": args.split, "normalize": normalize, "image_size": args.image_size}
    return model, meta, tokens


def _checkpoint_model(args: argparse.Namespace, data: Any, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The ``--checkpoint`` model, checked against ``--arch``, ``--dataset`` and ``--width``, and its provenance."""
    from modgraph.store import checkpoint_info, load_checkpoint

    model = load_checkpoint(args.checkpoint, args.arch, dataset=args.dataset, num_classes=data.num_classes,
                            width=args.width, device=device)
    info = checkpoint_info(args.checkpoint)
    source: dict[str, Any] = {"checkpoint": str(args.checkpoint), "width": info["width"] or args.width or 1.0}
    if info["spec"] is not None:
        source["spec"] = info["spec"]
    return model, source


def _stored_model(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The store's model for the options, trained if it is not stored yet, and its spec."""
    from modgraph.store import ModelSpec, get_model

    given = {name: getattr(args, name) for name in ("recipe", "epochs", "seed") if getattr(args, name) is not None}
    spec = ModelSpec(arch=args.arch, dataset=args.dataset, width=args.width or 1.0, **given)
    stored = get_model(spec, device=device, progress=not args.quiet)
    return stored.model, {"width": spec.width, "spec": dataclasses.asdict(spec)}


def _stem(args: argparse.Namespace) -> str:
    """File name stem of the default output: model source and curve settings."""
    if args.model:
        weights = "random" if args.weights in (None, "none") else Path(args.weights).stem
        source = "-".join(part for part in re.split(r"[^A-Za-z0-9_]+", args.model) if part)
        stem = f"{source}_{args.dataset}_{weights}"
    elif args.checkpoint:
        source = args.checkpoint.stem
    else:
        given = [f"{name}{getattr(args, name)}" for name in ("recipe", "epochs", "seed")
                 if getattr(args, name) is not None]
        source = "-".join([f"w{args.width or 1.0:g}", *given])
    if not args.model:
        stem = f"{args.arch}_{args.dataset}_{source}"
    extra = [f"L{hashlib.sha256(args.layers.encode()).hexdigest()[:8]}" if args.layers else "",
             args.tokens or "", f"px{args.image_size}" if args.image_size else ""]
    return (f"{stem}_{args.split}_n{args.n}_k{args.k}_r{args.repeats}_s{args.sample_seed}_{args.similarity}"
            f"_{args.tap}" + "".join(f"_{part}" for part in extra if part))
