"""``python -m modgraph prune``: redundant layers of a modularity curve and what removing them saves."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modgraph import provenance
from modgraph.cli.options import add_curve_arguments, curve_settings
from modgraph.paper import PLATEAU_RISE

DESCRIPTION = """\
Suggest layers to prune from a modularity curve: a layer is redundant when it
adds less than --threshold modularity over the layer before it (a drop, a
plateau or slow growth; never the first layer, the last one included). The curve is read
from --curve (JSON written by `python -m modgraph curve`) or computed from the
model (--checkpoint, or the model store without either). Prints each
suggestion with its explanation, which of them can be removed (layers that keep
their input's shape, at least one per stage), and the parameters and
multiply-accumulates (thop) of the model before and after removing them.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``prune`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "prune", help="suggest redundant layers and the pruned model's complexity", description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    model = parser.add_argument_group("model")
    model.add_argument("--arch", required=True, help="architecture name (a modgraph VGG or ResNet)")
    model.add_argument("--dataset", required=True, help="data set name; sets the classes and the image size")
    model.add_argument("--width", type=float,
                       help="channel width multiplier; default: 1, or the one --checkpoint records")
    source = model.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path, help="weights of the model (a store folder, model.pt or a "
                                                        "state dict); default: the model store")
    source.add_argument("--curve", type=Path, help="curve JSON of this architecture; skips computing the curve")
    model.add_argument("--recipe", help="training recipe of the stored model; default: the store's")
    model.add_argument("--epochs", type=int, help="training epochs of the stored model; default: the recipe's")
    model.add_argument("--seed", type=int, help="training seed of the stored model; default: the store's")
    add_curve_arguments(parser, "curve (when computed)")
    rule = parser.add_argument_group("pruning")
    rule.add_argument("--threshold", type=float, default=PLATEAU_RISE,
                      help="a layer adding less modularity than this is redundant")
    runtime = parser.add_argument_group("run")
    runtime.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    runtime.add_argument("--out", type=Path, help="also write the suggestions and complexities to this JSON file")
    runtime.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_prune)
    return parser


def run_prune(args: argparse.Namespace) -> int:
    """Find, explain and measure the pruning ``args`` describe."""
    from modgraph.curve import Curve
    from modgraph.data import load_dataset, sample_indices
    from modgraph.devices import resolve_device
    from modgraph.features import layer_names
    from modgraph.models.taps import TAPS
    from modgraph.prune import (
        complexity,
        depth_overrides,
        prunable_layers,
        prune,
        reduction,
        redundant_layers,
        select_removable,
    )

    device = resolve_device(args.device)
    if not math.isfinite(args.threshold):
        raise ValueError(f"--threshold must be a finite number, got {args.threshold}")
    if args.out is not None:
        provenance.check_writable(args.out)
    curve = None
    if args.curve is not None:
        if not args.curve.is_file():
            raise ValueError(f"curve file {args.curve} does not exist")
        curve = Curve.from_json(args.curve)
    else:
        TAPS.get(args.tap)
    data = load_dataset(args.dataset, "test", progress=not args.quiet)
    if curve is None:
        sample_indices(len(data), args.n, args.repeats, args.sample_seed)
    model, source = _model(args, data, device)
    if curve is not None:
        source["curve"] = str(args.curve)
    else:
        curve = _compute_curve(args, model, data, device, source["width"])
    tap = curve.meta.get("tap", args.tap)
    if list(curve.layers) != layer_names(model, tap):
        raise ValueError(
            f"the curve's layers ({curve.meta.get('arch', curve.meta.get('model', 'unknown model'))}: "
            f"{', '.join(curve.layers[:4])}, ...; {len(curve.layers)} layers) are not those of --arch {args.arch} "
            f"({', '.join(layer_names(model, tap)[:4])}, ...; {len(layer_names(model, tap))} layers)"
        )
    curve.check_model(args.arch, args.dataset, source["width"])
    verdicts = redundant_layers(curve, args.threshold)
    removable, refused = select_removable(model, verdicts)
    pruned = prune(model, removable)
    size = (1, 3, *data.image_size)
    before, after = complexity(model, size), complexity(pruned, size)
    saved = reduction(before, after)
    print(f"{args.arch} on {args.dataset}: {len(verdicts)} of {len(curve.layers)} layers add less than "
          f"{args.threshold:g} modularity (dQ = mean change from the previous layer ± its standard error)")
    for v in verdicts:
        status = "remove" if v.layer not in refused else "keep  "
        print(f"  {status} {v.layer:<16} {v.kind:<11} {v.reason}")
        if v.layer in refused:
            print(f"         {'':<16} {'':<11} kept: {refused[v.layer]}")
    print(f"removable layers of this architecture: {', '.join(prunable_layers(model, tap))}")
    print("pruned: " + ", ".join(f"{key}={value}" for key, value in depth_overrides(pruned).items()))
    print(f"params: {before.params / 1e6:.4f} M -> {after.params / 1e6:.4f} M ({saved['params_pct']:.1f} % fewer)")
    print(f"MACs:   {before.macs / 1e6:.2f} M -> {after.macs / 1e6:.2f} M ({saved['macs_pct']:.1f} % fewer; "
          f"input {size}, thop multiply-accumulates, FLOPs = 2 x MACs)")
    if args.out is not None:
        provenance.atomic_write_json(args.out, {
            "config": {"arch": args.arch, "dataset": args.dataset,
                       "threshold": args.threshold, "tap": tap, **source},
            "curve": curve.to_dict(),
            "verdicts": [dataclasses.asdict(v) for v in verdicts],
            "removed": [v.layer for v in removable], "kept": refused,
            "overrides": depth_overrides(pruned),
            "metrics": {"before": before.to_dict(), "after": after.to_dict(), "reduction_pct": dict(saved)},
            "code_version": provenance.code_version(),
        })
        print(f"wrote {args.out}")
    return 0


def _model(args: argparse.Namespace, data: Any, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The model to prune and where it came from."""
    from modgraph.models import create_model
    from modgraph.store import ModelSpec, checkpoint_info, get_model, load_checkpoint

    stored = {name: getattr(args, name) for name in ("recipe", "epochs", "seed") if getattr(args, name) is not None}
    if stored and (args.checkpoint or args.curve):
        raise ValueError(f"options of a stored model ({', '.join('--' + k for k in stored)}) do not apply with "
                         "--checkpoint or --curve")
    if args.checkpoint is not None:
        model = load_checkpoint(args.checkpoint, args.arch, dataset=args.dataset, num_classes=data.num_classes,
                                width=args.width, device=device)
        width = checkpoint_info(args.checkpoint)["width"] or args.width or 1.0
        return model, {"checkpoint": str(args.checkpoint), "width": width}
    if args.curve is not None:
        model = create_model(args.arch, num_classes=data.num_classes, width=args.width or 1.0, mean=data.mean,
                             std=data.std)
        return model.eval(), {"width": args.width or 1.0}
    spec = ModelSpec(arch=args.arch, dataset=args.dataset, width=args.width or 1.0, **stored)
    stored_model = get_model(spec, device=device, progress=not args.quiet).model
    return stored_model, {"width": spec.width, "spec": dataclasses.asdict(spec)}


def _compute_curve(args: argparse.Namespace, model: nn.Module, data: Any, device: torch.device, width: float) -> Any:
    from modgraph.curve import modularity_curve

    images, labels = data.tensors()
    meta = {"arch": args.arch, "dataset": args.dataset, "split": "test", "width": width}
    return modularity_curve(model, images, labels, curve_settings(args), device=device, meta=meta,
                            progress=not args.quiet)
