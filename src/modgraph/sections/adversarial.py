"""Fig. 6(a): the modularity curves of adversarial examples of stored models.

For every (model, attack) pair, :func:`modgraph.cache.adversarial` gives the
cached adversarial examples (the attack's settings:
:class:`modgraph.attacks.AdversarialSettings`) and
:func:`modgraph.cache.attack_curves` the curves of the adversarial images and
of the clean images they came from, labelled by their true classes: one
sample set of all found examples each, a paired comparison on the same
images. :func:`adversarial_study` does this for every pair and adds each
model's clean curve on ``n`` random test samples (:func:`modgraph.cache.curve`)
as a reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd
from tqdm.auto import tqdm

from modgraph.attacks import AdversarialResult, AdversarialSettings
from modgraph.claims import Claim, check, peak_gap
from modgraph.curve import Curve

if TYPE_CHECKING:
    from modgraph.store import ModelSpec

__all__ = ["AdversarialSettings", "AttackOutcome", "AdversarialStudy", "adversarial_study"]


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
    from modgraph import cache
    from modgraph.store import Trained, check_specs

    if not isinstance(settings, AdversarialSettings):
        raise ValueError(f"settings must be an AdversarialSettings, got {type(settings).__name__}")
    specs = check_specs(specs)
    c = settings.curve
    references = {spec.arch: cache.curve(Trained(spec), c, device=device, progress=progress) for spec in specs}
    outcomes = []
    jobs = [(spec, attack) for spec in specs for attack in settings.attacks]
    for spec, attack in tqdm(jobs, desc="attacks", disable=not progress):
        result = cache.adversarial(spec, attack, settings, device=device, progress=progress)
        curves = (cache.attack_curves(spec, result, c, device=device, progress=progress)
                  if result.n_found > c.k else {})
        outcomes.append(AttackOutcome(spec.arch, result, curves.get("adversarial"), curves.get("clean")))
    return AdversarialStudy(settings, tuple(outcomes), references)
