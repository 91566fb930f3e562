"""Profiles and notebook parameters: what each notebook runs with.

Profiles are the files ``params/<profile>.yml`` (schema at the top of each):
a description, a GPU flag, ``defaults`` and one block per notebook. A
notebook declares its parameters in its cell tagged ``parameters``;
:func:`notebook_params` merges a profile's values over them, checked by type
and, across parameters, by :data:`PARAMETER_CHECKS`. ``auto`` means ``fast``
where CUDA is available and ``quick`` elsewhere. In Jupyter a chapter calls
:func:`jupyter_parameters` to run with a profile's values. Notebooks import
this module, not :mod:`modgraph.book`, so an edit to how the book is built
re-executes no notebook.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, MutableMapping, Sequence

import yaml

from modgraph import paths
from modgraph.registry import Registry

__all__ = [
    "RESERVED",
    "AUTO",
    "CUSTOM_SUFFIX",
    "Profile",
    "list_profiles",
    "get_profile",
    "cuda_available",
    "toc_files",
    "notebook_names",
    "template_path",
    "notebook_parameters",
    "validate",
    "PARAMETER_CHECKS",
    "check_together",
    "notebook_params",
    "check_profile_blocks",
    "parse_overrides",
    "jupyter_parameters",
]

RESERVED = ("profile", "output")
"""Parameters the book tool sets in every notebook: the profile name and the results folder name."""

AUTO = {"cuda": "fast", "cpu": "quick"}
"""What ``--profile auto`` resolves to, with and without CUDA."""

CUSTOM_SUFFIX = "-custom"
_PROFILE_KEYS = {"description", "gpu"}


@dataclass(frozen=True)
class Profile:
    """One ``params/<name>.yml``: its description, GPU flag and parameter blocks."""

    name: str
    description: str
    gpu: bool
    defaults: Mapping[str, Any]
    notebooks: Mapping[str, Mapping[str, Any]]


def list_profiles() -> list[str]:
    """Names of the profiles (``params/*.yml``), sorted."""
    return sorted(p.stem for p in paths.params_dir().glob("*.yml"))


def get_profile(name: str) -> Profile:
    """Load ``params/<name>.yml`` (``auto`` resolved); ``ValueError`` listing valid names."""
    valid = list_profiles()
    if name == "auto":
        name = AUTO["cuda"] if cuda_available() else AUTO["cpu"]
    if name not in valid:
        raise ValueError(f"unknown profile {name!r}; valid choices: auto, {', '.join(valid)}")
    path = paths.params_dir() / f"{name}.yml"
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must be a mapping with 'profile', 'defaults' and per-notebook blocks")
    meta = raw.pop("profile", None) or {}
    defaults = raw.pop("defaults", None) or {}
    if not isinstance(meta, dict) or set(meta) - _PROFILE_KEYS:
        raise ValueError(f"{path}: 'profile' must be a mapping with keys {sorted(_PROFILE_KEYS)}, got {meta!r}")
    for block, value in [("defaults", defaults), *raw.items()]:
        if not isinstance(value, dict):
            raise ValueError(f"{path}: block {block!r} must be a mapping of parameter -> value")
        reserved = set(value) & set(RESERVED)
        if reserved:
            raise ValueError(f"{path}: block {block!r} sets {sorted(reserved)}, which the book tool sets itself")
    return Profile(name, str(meta.get("description", "")), bool(meta.get("gpu", False)), defaults,
                   {str(k): v for k, v in raw.items()})


def toc_files(toc: Path) -> list[str]:
    """Every ``root`` and ``file`` entry of a table of contents, in order."""
    if not toc.is_file():
        raise ValueError(f"no table of contents at {toc}")
    files: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    files.append(node[key])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    try:
        walk(yaml.safe_load(toc.read_text()))
    except yaml.YAMLError as err:
        raise ValueError(f"{toc} is not valid YAML: {err}") from None
    return files


def notebook_names(toc: Path | None = None) -> list[str]:
    """The notebooks listed in ``_toc.yml`` (entries ``notebooks/<name>``), in book order."""
    files = toc_files(toc or paths.root() / "_toc.yml")
    return [Path(f).stem for f in files if Path(f).parent.as_posix() == "notebooks"]


def template_path(notebook: str) -> Path:
    """``notebooks/<notebook>.ipynb``; ``ValueError`` unless ``_toc.yml`` lists it and the file exists."""
    names = notebook_names()
    if notebook not in names:
        raise ValueError(f"unknown notebook {notebook!r}; valid choices: {', '.join(names)}")
    path = paths.notebooks_dir() / f"{notebook}.ipynb"
    if not path.is_file():
        raise ValueError(f"notebook {notebook!r} is listed in _toc.yml but {path} does not exist")
    return path


def notebook_parameters(notebook: str) -> dict[str, Any]:
    """The parameters declared in the notebook's ``parameters`` cell: name -> default value.

    A default that is not a Python literal maps to ``None`` (accepts any type).
    """
    import papermill

    path = template_path(notebook)
    declared = papermill.inspect_notebook(str(path))
    missing = [name for name in RESERVED if name not in declared]
    if missing:
        raise ValueError(f"{path}: the cell tagged 'parameters' must declare {', '.join(RESERVED)}; "
                         f"missing {', '.join(missing)}")
    out = {}
    for name, info in declared.items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            out[name] = None
    return out


def _type_ok(value: Any, default: Any) -> bool:
    kind = type(default)
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in (list, tuple):
        return isinstance(value, (list, tuple))
    return isinstance(value, kind)


def _check_value(notebook: str, name: str, value: Any, default: Any) -> None:
    """``value`` must have the type of ``default``: ``null`` only where the default is ``None``, list items
    like the default's items where those share one type."""
    if default is None:
        return
    expected = f"{type(default).__name__} (default {default!r})"
    if value is None:
        raise ValueError(f"parameter {name!r} of {notebook} expects {expected}, got null; only parameters whose "
                         f"default is None take null")
    if not _type_ok(value, default):
        raise ValueError(f"parameter {name!r} of {notebook} expects {expected}, got {type(value).__name__} "
                         f"{value!r}")
    if isinstance(default, (list, tuple)) and default and len({type(item) for item in default}) == 1:
        wrong = [item for item in value if item is None or not _type_ok(item, default[0])]
        if wrong:
            raise ValueError(f"parameter {name!r} of {notebook} expects a list of {type(default[0]).__name__} "
                             f"(default {default!r}), got {value!r}")


PARAMETER_CHECKS: Registry[Callable[[Mapping[str, Any]], None]] = Registry("parameter check")
"""Notebook name -> check of its merged parameters that spans several of them; ``ValueError`` on conflict.

Run for every notebook before any notebook executes (:func:`notebook_params`,
:func:`run_figure`), so an override that contradicts another parameter of the
same notebook stops the call at once.
"""


def _snapshot_checks(last: Callable[[Mapping[str, Any]], Mapping[str, Any]]) -> Callable[[Mapping[str, Any]], None]:
    def check(params: Mapping[str, Any]) -> None:
        from modgraph.cache import check_snapshots

        check_snapshots(last(params), recipe=params["recipe"], epochs=params["epochs"])
    return check


def _ablation_check(params: Mapping[str, Any]) -> None:
    from modgraph.curve import CurveSettings
    from modgraph.sections.ablations import AblationSettings

    curve = CurveSettings(**{name: params[name] for name in ("n", "k", "repeats", "seed", "similarity", "tap")})
    AblationSettings(curve, params["alternative"], params["ns"], params["small_ks"], params["large_ks"])


PARAMETER_CHECKS.register("01_curves", _snapshot_checks(lambda p: p["keep_snapshots"]))
PARAMETER_CHECKS.register("03_training", _snapshot_checks(lambda p: {arch: p["max_epoch"] for arch in p["archs"]}))
PARAMETER_CHECKS.register("04_ablations", _ablation_check)


def check_together(notebook: str, params: Mapping[str, Any], where: str) -> None:
    """:data:`PARAMETER_CHECKS` of ``notebook`` on its merged ``params``; ``ValueError`` prefixed ``where``."""
    if notebook not in PARAMETER_CHECKS:
        return
    try:
        PARAMETER_CHECKS.get(notebook)(params)
    except (ValueError, KeyError) as err:
        problem = f"parameter {err} is missing" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{where}: parameters of {notebook} do not fit together: {problem}") from None


def validate(notebook: str, params: Mapping[str, Any], declared: Mapping[str, Any], where: str) -> None:
    """``ValueError`` (prefixed ``where``) for a name ``declared`` lacks or a value of the wrong type."""
    unknown = sorted(set(params) - set(declared))
    if unknown:
        valid = ", ".join(n for n in declared if n not in RESERVED)
        raise ValueError(f"{where}: notebook {notebook} has no parameter {', '.join(map(repr, unknown))}; "
                         f"valid names: {valid}")
    for name, value in params.items():
        _check_value(notebook, name, value, declared[name])


def notebook_params(profile: Profile, notebook: str, *, output: str | None = None) -> dict[str, Any]:
    """The parameters ``notebook`` runs with under ``profile``: reserved, then defaults, then its block.

    A ``defaults`` entry applies to each notebook that declares it; a
    notebook's own block may only name parameters it declares.
    """
    declared = notebook_parameters(notebook)
    block = profile.notebooks.get(notebook, {})
    validate(notebook, block, declared, f"params/{profile.name}.yml")
    params: dict[str, Any] = {"profile": profile.name, "output": output or profile.name}
    params.update({k: v for k, v in profile.defaults.items() if k in declared})
    params.update(block)
    validate(notebook, {k: v for k, v in params.items() if k not in RESERVED}, declared,
              f"params/{profile.name}.yml")
    check_together(notebook, {**declared, **params}, f"params/{profile.name}.yml")
    return params


def check_profile_blocks(profile: Profile, names: Sequence[str]) -> None:
    """``ValueError`` for a block of an unknown notebook or a default no notebook declares."""
    unknown = sorted(set(profile.notebooks) - set(names))
    if unknown:
        raise ValueError(f"params/{profile.name}.yml has blocks for unknown notebooks {unknown}; "
                         f"valid choices: defaults, {', '.join(names)}")
    declared = set().union(*(notebook_parameters(n) for n in names)) if names else set()
    unused = sorted(set(profile.defaults) - declared)
    if unused:
        raise ValueError(f"params/{profile.name}.yml: defaults {unused} are declared by no notebook")


def parse_overrides(pairs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """``[(name, text...), ...]`` -> ``{name: value}``, the texts joined by spaces and parsed as YAML (like
    papermill's ``-p``), so ``-p archs [vgg11, vgg16]`` split by a shell into three words still means a list."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if len(pair) < 2:
            raise ValueError(f"each override is a name and a value (-p name value), got {list(pair)!r}")
        name, text = pair[0], " ".join(pair[1:])
        if name in RESERVED:
            raise ValueError(f"parameter {name!r} is set by the book tool; choose the profile with --profile")
        try:
            out[name] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(f"malformed value for parameter {name!r}: {text!r} ({problem})") from None
    return out


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (what ``auto`` resolves by)."""
    import torch

    return torch.cuda.is_available()


_CELL_VALUES = "_modgraph_parameters_cell"
"""Where :func:`jupyter_parameters` keeps the ``parameters`` cell's values in an interactive namespace."""


def jupyter_parameters(notebook: str, namespace: MutableMapping[str, Any], **overrides: Any) -> None:
    """In Jupyter, set ``namespace`` to the parameters ``make figure NB --profile P`` runs ``notebook`` with.

    A chapter calls it right after its ``parameters`` cell with ``globals()``.
    The book tool (papermill) injects ``profile`` and ``output`` after that
    cell; when nothing was injected (``output`` is still ``None``), this loads
    ``params/<profile>.yml`` for the profile the cell names, as
    :func:`run_figure` does with no overrides, applies ``overrides`` (checked
    like ``-p``) and sends the results to ``results/<profile>-custom/``.
    Rerunning it alone starts again from the cell's values; under the book
    tool it changes nothing.
    """
    declared = notebook_parameters(notebook)
    if namespace.get("output") is None:
        namespace[_CELL_VALUES] = {name: namespace[name] for name in declared if name in namespace}
    elif _CELL_VALUES not in namespace:
        return
    reserved = sorted(set(overrides) & set(RESERVED))
    if reserved:
        raise ValueError(f"overrides may not set {reserved}: name the profile in the parameters cell")
    validate(notebook, overrides, declared, "overrides")
    cell = namespace[_CELL_VALUES]
    prof = get_profile(cell.get("profile", ""))
    namespace.update({**cell, **notebook_params(prof, notebook, output=prof.name + CUSTOM_SUFFIX), **overrides})
