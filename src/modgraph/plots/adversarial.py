"""Fig. 6(a): example adversarial images beside the clean images they came from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:
    from modgraph.attacks import AdversarialResult

__all__ = ["example_grid"]


def _image(x: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, C) for ``imshow``."""
    return np.clip(np.transpose(x, (1, 2, 0)), 0.0, 1.0)


def example_grid(
    results: Mapping[str, "AdversarialResult"],
    classes: Sequence[str],
    *,
    title: str,
    per_attack: int = 4,
) -> plt.Figure:
    """One row per attack: the first ``per_attack`` examples as (clean, adversarial) image pairs.

    ``results`` maps a row label (the attack) to its
    :class:`~modgraph.attacks.AdversarialResult` (images ``(n, C, H, W)`` in
    ``[0, 1]``); ``classes`` names the labels. Clean images are captioned with
    their true class, adversarial ones with the predicted class and the L2
    norm of the perturbation; a row without examples says so.
    """
    if not results:
        raise ValueError("example_grid needs at least one attack's result")
    if isinstance(per_attack, bool) or not isinstance(per_attack, int) or per_attack < 1:
        raise ValueError(f"per_attack must be an int >= 1, got {per_attack!r}")
    for name, r in results.items():
        if r.images.ndim != 4 or r.images.shape != r.clean.shape:
            raise ValueError(f"{name}: images and clean must both be (n, C, H, W), got {tuple(r.images.shape)} "
                             f"and {tuple(r.clean.shape)}")
        used = np.concatenate([r.labels.numpy(), r.predictions.numpy()])
        if used.size and (used.min() < 0 or used.max() >= len(classes)):
            raise ValueError(f"{name}: labels and predictions must index the {len(classes)} classes")
    fig, axes = plt.subplots(len(results), 2 * per_attack, figsize=(1.25 * 2 * per_attack, 1.55 * len(results)),
                             squeeze=False)
    for row, (name, r) in zip(axes, results.items()):
        shown = min(per_attack, len(r.images))
        for i in range(per_attack):
            for ax, kind in ((row[2 * i], "clean"), (row[2 * i + 1], "adversarial")):
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if i >= shown:
                    ax.axis("off")
                    continue
                if kind == "clean":
                    ax.imshow(_image(r.clean[i].numpy()))
                    ax.set_title(classes[int(r.labels[i])], fontsize=7)
                else:
                    ax.imshow(_image(r.images[i].numpy()))
                    l2 = float((r.images[i] - r.clean[i]).norm())
                    ax.set_title(f"→ {classes[int(r.predictions[i])]}\nL2 {l2:.2f}", fontsize=7)
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        if shown == 0:
            row[0].text(0.0, 0.5, "no adversarial example found", transform=row[0].transAxes, fontsize=8,
                        va="center")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
