"""The book: execute the section notebooks with papermill per profile, then build it with Jupyter Book.

``python -m modgraph.book build --profile P`` executes each notebook listed in
``_toc.yml`` whose template, parameters or code (the modules it imports, with
what they import, and the versions of torch, torchvision and numpy) changed since its last run
(a stamp per notebook under ``results/<P>/stamps/``), then builds the book
from a staged source tree into ``_build/<P>/``.
``python -m modgraph.book figure NB --profile P -p name value ...`` reruns one
notebook with parameter overrides into ``results/<P>-custom/`` and builds
``_build/<P>-custom/`` with that page replaced.

Profiles are the files ``params/<profile>.yml`` (schema at the top of each);
``auto`` means ``fast`` where CUDA is available and ``quick`` elsewhere. A
profile marked ``gpu: true`` publishes its results in git: without CUDA its
up-to-date results are reused, and stale ones stop the build unless forced.
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, MutableMapping, Sequence

import yaml

from modgraph import paths, provenance, site
from modgraph.registry import Registry

__all__ = [
    "BookError",
    "NotebookFailed",
    "Profile",
    "RESERVED",
    "list_profiles",
    "get_profile",
    "notebook_names",
    "notebook_parameters",
    "notebook_params",
    "parse_overrides",
    "PARAMETER_CHECKS",
    "notebook_code",
    "stamp",
    "stale_reason",
    "execute_notebook",
    "PAGE_TAGS",
    "prepare_page",
    "site_config",
    "build_html",
    "run_book",
    "run_figure",
    "jupyter_parameters",
    "main",
]

RESERVED = ("profile", "output")
"""Parameters the book tool sets in every notebook: the profile name and the results folder name."""

AUTO = {"cuda": "fast", "cpu": "quick"}
"""What ``--profile auto`` resolves to, with and without CUDA."""

KERNEL = "python3"
CUSTOM_SUFFIX = "-custom"
_PROFILE_KEYS = {"description", "gpu"}


class BookError(RuntimeError):
    """The book cannot be built as asked (stale GPU results, a failed build); the message says why."""


class NotebookFailed(BookError):
    """A notebook raised while executing; the partial notebook is kept for inspection."""


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
        name = AUTO["cuda"] if _cuda_available() else AUTO["cpu"]
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


def _toc_files(toc: Path) -> list[str]:
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
    files = _toc_files(toc or paths.root() / "_toc.yml")
    return [Path(f).stem for f in files if Path(f).parent.as_posix() == "notebooks"]


def _template(notebook: str) -> Path:
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

    path = _template(notebook)
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


PARAMETER_CHECKS.register("01_curves", _snapshot_checks(lambda p: p["keep_snapshots"]))
PARAMETER_CHECKS.register("03_training", _snapshot_checks(lambda p: {arch: p["max_epoch"] for arch in p["archs"]}))


def _check_together(notebook: str, params: Mapping[str, Any], where: str) -> None:
    if notebook not in PARAMETER_CHECKS:
        return
    try:
        PARAMETER_CHECKS.get(notebook)(params)
    except (ValueError, KeyError) as err:
        problem = f"parameter {err} is missing" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{where}: parameters of {notebook} do not fit together: {problem}") from None


def _validate(notebook: str, params: Mapping[str, Any], declared: Mapping[str, Any], where: str) -> None:
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
    _validate(notebook, block, declared, f"params/{profile.name}.yml")
    params: dict[str, Any] = {"profile": profile.name, "output": output or profile.name}
    params.update({k: v for k, v in profile.defaults.items() if k in declared})
    params.update(block)
    _validate(notebook, {k: v for k, v in params.items() if k not in RESERVED}, declared,
              f"params/{profile.name}.yml")
    _check_together(notebook, {**declared, **params}, f"params/{profile.name}.yml")
    return params


def _check_profile_blocks(profile: Profile, names: Sequence[str]) -> None:
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


def notebook_code(notebook: str) -> tuple[str, ...]:
    """The ``modgraph`` modules the code cells of ``notebook``'s template import (sorted; shell and magic lines
    aside): with what they import, the code its results depend on (:func:`modgraph.provenance.code_files`)."""
    path = _template(notebook)
    cells = [c for c in json.loads(path.read_text())["cells"] if c.get("cell_type") == "code"]
    modules: set[str] = set()
    for cell in cells:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError as err:
            raise BookError(f"{paths.relative(path)}: a code cell does not parse: {err}") from None
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module)
                modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return tuple(sorted(m for m in modules if m.split(".")[0] == "modgraph" and provenance.module_file(m)))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stamp(notebook: str, params: Mapping[str, Any]) -> dict[str, str]:
    """What an execution depends on: hashes of the template, the parameters and the code its results depend on
    (:func:`modgraph.provenance.code_hash` of :func:`notebook_code`, as the compute cache keys its entries)."""
    return {
        "template": _sha(_template(notebook).read_bytes()),
        "params": _sha(json.dumps(params, sort_keys=True).encode()),
        "code": provenance.code_hash(notebook_code(notebook)),
    }


def _stamp_path(output: str, notebook: str) -> Path:
    return paths.results_dir(output) / "stamps" / f"{notebook}.json"


def _executed_path(output: str, notebook: str) -> Path:
    return paths.results_dir(output) / f"{notebook}.ipynb"


def stale_reason(notebook: str, params: Mapping[str, Any], output: str) -> str | None:
    """Why ``results/<output>/<notebook>.ipynb`` must be (re)executed, or ``None`` if it is up to date."""
    path = _stamp_path(output, notebook)
    if not _executed_path(output, notebook).is_file() or not path.is_file():
        return "never executed"
    try:
        old = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "stamp unreadable"
    if not isinstance(old, dict):
        return "stamp unreadable"
    new = stamp(notebook, params)
    changed = [what for what in ("template", "params", "code") if old.get(what) != new[what]]
    return f"{' and '.join(changed)} changed" if changed else None


def _kernel_env() -> None:
    """Make the ``python3`` kernel this interpreter's: prefer its environment's kernelspec and PATH."""
    os.environ["JUPYTER_PREFER_ENV_PATH"] = "1"
    # tqdm.auto warns in every kernel without ipywidgets; the book's pages run with progress=False.
    quiet = "ignore:IProgress not found"
    if quiet not in os.environ.get("PYTHONWARNINGS", ""):
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))
    bindir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv0 = KernelSpecManager().get_kernel_spec(KERNEL).argv[0]
    except NoSuchKernel:
        return
    if os.path.isabs(argv0) and Path(argv0).parent != Path(sys.executable).parent:
        raise BookError(f"the Jupyter kernel {KERNEL!r} runs {argv0}, not this environment's "
                        f"{sys.executable}; run `make setup` to install the environment's kernel")


def execute_notebook(notebook: str, params: Mapping[str, Any], output: str, *, progress: bool = True) -> float:
    """Execute the template with ``params`` into ``results/<output>/<notebook>.ipynb``; returns seconds.

    Execution writes a temporary file that replaces the previous result only
    on success; on failure the partial notebook moves to
    ``_build/failed/<output>/<notebook>.ipynb`` and :class:`NotebookFailed`
    names the notebook, the cell and the error.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    template = _template(notebook)
    final = _executed_path(output, notebook)
    final.parent.mkdir(parents=True, exist_ok=True)
    running = final.with_name(f".{notebook}.running.ipynb")
    failed = paths.build_dir() / "failed" / output / f"{notebook}.ipynb"
    _kernel_env()
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(template), str(running), parameters=dict(params), kernel_name=KERNEL,
            progress_bar=progress, cwd=str(paths.root()),
        )
    except BaseException as err:
        if running.is_file():
            failed.parent.mkdir(parents=True, exist_ok=True)
            os.replace(running, failed)
        if isinstance(err, PapermillExecutionError):
            message = f"{err.ename}: {err.evalue}" if err.evalue else err.ename
            raise NotebookFailed(f"notebook {notebook} failed in cell [{err.exec_count}]: {message}\n"
                                 f"  partial notebook kept at {failed}") from None
        if isinstance(err, Exception):
            raise NotebookFailed(f"notebook {notebook} failed: {type(err).__name__}: {err}\n"
                                 f"  partial notebook kept at {failed}") from None
        raise
    os.replace(running, final)
    failed.unlink(missing_ok=True)
    return time.perf_counter() - start


PAGE_TAGS = {"parameters": "remove-cell", "injected-parameters": "remove-cell"}
"""Cell tag set by papermill -> the Jupyter Book tag the page gets: the settings cells are not shown (the
chapter's first output lists the parameters it ran with, :meth:`modgraph.report.Section._repr_html_`)."""

_SETUP = re.compile(r"\bSection\.from_notebook\(")


def prepare_page(nb: dict) -> dict:
    """An executed notebook (nbformat JSON) as its page shows it, as a new dict.

    The ``parameters`` and papermill's ``injected-parameters`` cells are
    removed (:data:`PAGE_TAGS`); the input of the setup cell (the one that
    creates the :class:`modgraph.report.Section`, whose output is the
    parameter table) is collapsed behind a toggle (``hide-input``).
    """
    out = json.loads(json.dumps(nb))
    for cell in out.get("cells", []):
        tags = list(cell.get("metadata", {}).get("tags", []))
        added = [PAGE_TAGS[t] for t in tags if t in PAGE_TAGS]
        source = "".join(cell.get("source", ""))
        if cell.get("cell_type") == "code" and not added and _SETUP.search(source):
            added.append("hide-input")
        if added:
            cell.setdefault("metadata", {})["tags"] = tags + [t for t in dict.fromkeys(added) if t not in tags]
    return out


def _git_remote() -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(paths.root()), "remote", "get-url", "origin"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _https_url(remote: str) -> str | None:
    """``https://<host>/<owner>/<repo>`` of a git remote, or ``None`` for one that is not hosted (a local path)."""
    remote = re.sub(r"^git@([^:]+):", r"https://\1/", remote.strip())
    remote = re.sub(r"^ssh://git@", "https://", remote)
    url = remote.removesuffix("/").removesuffix(".git")
    return url if re.fullmatch(r"https://[^/\s]+/[^/\s]+/[^/\s]+", url) else None


_REPOSITORY_BUTTONS = ("use_repository_button", "use_issues_button", "use_edit_page_button")


def site_config(config: Mapping[str, Any], environ: Mapping[str, str], remote: str | None) -> dict:
    """The Jupyter Book configuration to build with: ``config`` (``_config.yml``) with its repository.

    The repository (its button, and the Binder/Colab launch buttons of the
    chapters) is ``repository.url`` of ``_config.yml`` when set there; else
    the GitHub repository a workflow runs in (``GITHUB_SERVER_URL`` /
    ``GITHUB_REPOSITORY``); else the git remote ``origin``. Without any, the
    buttons are switched off.
    """
    out = json.loads(json.dumps(dict(config)))
    repo = out.setdefault("repository", {})
    if not repo.get("url"):
        if environ.get("GITHUB_REPOSITORY"):
            repo["url"] = f"{environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{environ['GITHUB_REPOSITORY']}"
        elif remote:
            repo["url"] = _https_url(remote)
    if not repo.get("url"):
        out.pop("repository")
        out.pop("launch_buttons", None)
        out.setdefault("html", {}).update(dict.fromkeys(_REPOSITORY_BUTTONS, False))
    return out


def _page_title(nb: Mapping[str, Any], name: str) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            match = re.search(r"^# (.+)$", "".join(cell.get("source", "")), re.M)
            if match:
                return match.group(1).strip()
    return name


def _write_if_changed(dst: Path, data: bytes) -> None:
    if dst.is_file() and dst.read_bytes() == data:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)


def _results_of(page: Path) -> dict | None:
    """The results JSON an executed page wrote (``results/<output>/<name>.json``), or None."""
    path = page.with_suffix(".json")
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError as err:
        raise ValueError(f"cannot build the book: {paths.relative(path)} is not valid JSON ({err})") from None


def _stage(tag: str, pages: Mapping[str, Path]) -> Path:
    """Write ``_config.yml`` (:func:`site_config`), ``_toc.yml``, ``book/``, the executed pages
    (:func:`prepare_page`) and, when the TOC lists it, the claims page into ``_build/<tag>/src``."""
    src = paths.build_dir() / tag / "src"
    root = paths.root()
    origins = [root / "_config.yml", root / "_toc.yml", *pages.values()]
    book = root / "book"
    files = {src / "book" / p.relative_to(book): p for p in book.rglob("*") if p.is_file()} if book.is_dir() else {}
    for origin in origins + list(files.values()):
        if not origin.is_file():
            raise ValueError(f"cannot build the book: {origin} does not exist")
    config = site_config(yaml.safe_load((root / "_config.yml").read_text()) or {}, os.environ, _git_remote())
    contents: dict[Path, bytes] = {
        src / "_config.yml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True).encode(),
        src / "_toc.yml": (root / "_toc.yml").read_bytes(),
        **{dst: origin.read_bytes() for dst, origin in files.items()},
    }
    executed = {name: json.loads(path.read_text()) for name, path in pages.items()}
    for name, nb in executed.items():
        contents[src / site.PAGES_DIR / f"{name}.ipynb"] = json.dumps(prepare_page(nb), indent=1).encode()
    if site.CLAIMS_PAGE in _toc_files(root / "_toc.yml"):
        chapters = [(name, _page_title(executed[name], name), _results_of(path)) for name, path in pages.items()]
        profile = next((p["profile"] for _, _, p in chapters if p), tag)
        contents[src / f"{site.CLAIMS_PAGE}.md"] = site.claims_page(chapters, profile).encode()
    for dst, data in contents.items():
        _write_if_changed(dst, data)
    for path in sorted(src.rglob("*"), reverse=True):
        if path.is_file() and path not in contents:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return src


def _publish_results(html: Path, pages: Mapping[str, Path]) -> None:
    """Copy each page's results JSON and the figures it lists into the site, at their project-relative paths."""
    for page in pages.values():
        payload = _results_of(page)
        if payload is None:
            continue
        for rel in [paths.relative(page.with_suffix(".json")), *payload.get("figures", [])]:
            origin = paths.root() / rel
            if origin.is_file():
                dst = html / rel
                if not (dst.is_file() and filecmp.cmp(origin, dst, shallow=False)):
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, dst)


def build_html(tag: str, pages: Mapping[str, Path], *, progress: bool = True) -> Path:
    """Stage the sources and run ``jupyter-book build`` into ``_build/<tag>/``; returns ``index.html``."""
    src = _stage(tag, pages)
    out = paths.build_dir() / tag
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(src), "--path-output", str(out), "--builder", "html"]
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = _ANSI.sub("", result.stdout).splitlines()
    if result.returncode != 0:
        raise BookError(f"jupyter-book build failed for {tag} (sources in {src}):\n" + "\n".join(_build_errors(lines)))
    warnings = [line for line in lines if "WARNING" in line]
    if progress and warnings:
        print(f"jupyter-book: {len(warnings)} warning(s); first: {warnings[0]}", file=sys.stderr)
    _publish_results(out / "_build" / "html", pages)
    return out / "_build" / "html" / "index.html"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _build_errors(lines: list[str]) -> list[str]:
    """The lines of a failed build's log that say what went wrong (not the traceback frames)."""
    picked = [line for line in lines if "ERROR" in line]
    for i, line in enumerate(lines):
        if line.startswith("Exception occurred:"):
            for detail in lines[i + 1:]:
                if detail.startswith("The full traceback"):
                    break
                if detail and not detail.startswith(" "):
                    picked.append(detail)
    return picked or [line for line in lines if line and not line.startswith(" ")][-10:]


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def _plan(profile: Profile, names: Sequence[str], *, force: bool) -> list[tuple[str, dict, str | None]]:
    """Validate every notebook's parameters, then list (name, params, stale reason) for each."""
    _check_profile_blocks(profile, names)
    params = {n: notebook_params(profile, n) for n in names}
    plan = [(n, params[n], stale_reason(n, params[n], profile.name)) for n in names]
    stale = [(n, why) for n, _, why in plan if why]
    if profile.gpu and stale and not force and not _cuda_available():
        listing = "; ".join(f"{n} ({why})" for n, why in stale)
        raise BookError(
            f"results/{profile.name}/ is missing or stale for: {listing}. Profile {profile.name!r} needs a "
            f"CUDA GPU: rerun `make book PROFILE={profile.name}` on a GPU machine and commit "
            f"results/{profile.name}/, or pass FORCE=1 (--force) to execute here on the CPU (slow)."
        )
    return plan


def _execute_plan(profile: Profile, plan: Sequence[tuple[str, dict, str | None]], *, progress: bool) -> None:
    for i, (name, params, why) in enumerate(plan, 1):
        head = f"[{i}/{len(plan)}] {name}"
        if why is None:
            _say(progress, f"{head}: up to date")
            continue
        _say(progress, f"{head}: executing ({why})")
        new_stamp = stamp(name, params)
        seconds = execute_notebook(name, params, profile.name, progress=progress)
        provenance.atomic_write_json(_stamp_path(profile.name, name), {
            **new_stamp, "wall_s": round(seconds, 1), "code_version": provenance.code_version(),
        })
        _say(progress, f"{head}: done in {seconds:.1f} s")


def run_book(profile: str = "auto", *, force: bool = False, progress: bool = True) -> Path:
    """Execute the changed notebooks of ``profile`` and build ``_build/<profile>/``; returns ``index.html``."""
    prof = get_profile(profile)
    names = notebook_names()
    for name in names:
        _template(name)
    start = time.perf_counter()
    _say(progress, f"book: profile {prof.name} ({prof.description or 'no description'})")
    _execute_plan(prof, _plan(prof, names, force=force), progress=progress)
    index = build_html(prof.name, {n: _executed_path(prof.name, n) for n in names}, progress=progress)
    _say(progress, f"book: built in {time.perf_counter() - start:.1f} s")
    return index


def run_figure(notebook: str, overrides: Mapping[str, Any], profile: str = "auto", *,
               force: bool = False, progress: bool = True) -> Path:
    """Rerun ``notebook`` with ``overrides`` into ``results/<profile>-custom/`` and build that book variant.

    Every name and value is validated before anything runs. The other pages
    are the profile's results (executed first where stale). Returns ``index.html``.
    """
    prof = get_profile(profile)
    names = notebook_names()
    declared = notebook_parameters(notebook) if notebook in names else None
    if declared is None:
        raise ValueError(f"unknown notebook {notebook!r}; valid choices: {', '.join(names)}")
    tag = prof.name + CUSTOM_SUFFIX
    params = notebook_params(prof, notebook, output=tag)
    _validate(notebook, dict(overrides), declared, "overrides")
    params.update(overrides)
    _check_together(notebook, {**declared, **params}, f"overrides {dict(overrides)}")
    plan = [entry for entry in _plan(prof, names, force=force) if entry[0] != notebook]
    _execute_plan(prof, plan, progress=progress)
    _say(progress, f"{notebook}: executing with {dict(overrides)} into results/{tag}/")
    seconds = execute_notebook(notebook, params, tag, progress=progress)
    _say(progress, f"{notebook}: done in {seconds:.1f} s")
    pages = {n: _executed_path(tag if n == notebook else prof.name, n) for n in names}
    return build_html(tag, pages, progress=progress)


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
    _validate(notebook, overrides, declared, "overrides")
    cell = namespace[_CELL_VALUES]
    prof = get_profile(cell.get("profile", ""))
    namespace.update({**cell, **notebook_params(prof, notebook, output=prof.name + CUSTOM_SUFFIX), **overrides})


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m modgraph.book {build,figure}``; exit 0 on success, 1 on failure, 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m modgraph.book", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = sub.add_parser("build", help="execute changed notebooks, build the book")
    figure = sub.add_parser("figure", help="rerun one notebook with parameter overrides, rebuild")
    figure.add_argument("notebook", help="notebook name, e.g. 01_curves")
    figure.add_argument("-p", "--parameter", nargs="+", action="append", default=[], metavar="NAME VALUE",
                        help="override a parameter; VALUE is parsed as YAML, its words joined by spaces "
                             "(e.g. -p k 5 -p archs '[vgg11]' or -p archs [vgg11, vgg16])")
    for p in (build, figure):
        p.add_argument("--profile", default="auto", help="params/<profile>.yml, or auto (fast with CUDA, else quick)")
        p.add_argument("--force", action="store_true", help="execute a GPU profile's stale notebooks without CUDA")
        p.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            index = run_book(args.profile, force=args.force, progress=not args.quiet)
        else:
            index = run_figure(args.notebook, parse_overrides(args.parameter), args.profile,
                               force=args.force, progress=not args.quiet)
    except ValueError as err:
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BookError as err:
        print(f"{parser.prog} {args.command}: {err}", file=sys.stderr)
        return 1
    print(index)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
