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
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from modgraph import paths, profiles, provenance, site
from modgraph.profiles import (
    CUSTOM_SUFFIX,
    PARAMETER_CHECKS,
    RESERVED,
    Profile,
    check_profile_blocks,
    check_together,
    get_profile,
    jupyter_parameters,
    list_profiles,
    notebook_names,
    notebook_parameters,
    notebook_params,
    parse_overrides,
    template_path,
    toc_files,
    validate,
)

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

KERNEL = "python3"


class BookError(RuntimeError):
    """The book cannot be built as asked (stale GPU results, a failed build); the message says why."""


class NotebookFailed(BookError):
    """A notebook raised while executing; the partial notebook is kept for inspection."""


def notebook_code(notebook: str) -> tuple[str, ...]:
    """The ``modgraph`` modules the code cells of ``notebook``'s template import (sorted; shell and magic lines
    aside): with what they import, the code its results depend on (:func:`modgraph.provenance.code_files`)."""
    path = template_path(notebook)
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
        "template": _sha(template_path(notebook).read_bytes()),
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

    template = template_path(notebook)
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
    if site.CLAIMS_PAGE in toc_files(root / "_toc.yml"):
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


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def _plan(profile: Profile, names: Sequence[str], *, force: bool) -> list[tuple[str, dict, str | None]]:
    """Validate every notebook's parameters, then list (name, params, stale reason) for each."""
    check_profile_blocks(profile, names)
    params = {n: notebook_params(profile, n) for n in names}
    plan = [(n, params[n], stale_reason(n, params[n], profile.name)) for n in names]
    stale = [(n, why) for n, _, why in plan if why]
    if profile.gpu and stale and not force and not profiles.cuda_available():
        listing = "; ".join(f"{n} ({why})" for n, why in stale)
        raise BookError(
            f"results/{profile.name}/ is missing or stale for: {listing}. Profile {profile.name!r} needs a "
            f"CUDA GPU: rerun `make book PROFILE={profile.name}` on a GPU machine and commit "
            f"results/{profile.name}/, or pass FORCE=1 (--force) to execute here on the CPU (slow)."
        )
    return plan


def _say_training_estimate(profile: str, notebooks: Mapping[str, Mapping[str, Any]]) -> None:
    """Print how long the models that ``notebooks`` (name -> the parameters it runs with) will train take
    here (:func:`modgraph.plan.estimate_training`); nothing when the store holds them all."""
    from modgraph.plan import estimate_training, make_plan, requests_of

    models = make_plan(profile, requests={name: requests_of(name, params) for name, params in notebooks.items()})
    if models.missing():
        _say(True, f"book: {estimate_training(models).summary()}; the chapters train them when they first need "
                   f"them (`make models PROFILE={profile}` trains the book's models beforehand, on a cluster too)")


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
        template_path(name)
    start = time.perf_counter()
    _say(progress, f"book: profile {prof.name} ({prof.description or 'no description'})")
    plan = _plan(prof, names, force=force)
    if progress and any(why for _, _, why in plan):
        _say_training_estimate(prof.name, {name: params for name, params, why in plan if why})
    _execute_plan(prof, plan, progress=progress)
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
    validate(notebook, dict(overrides), declared, "overrides")
    params.update(overrides)
    check_together(notebook, {**declared, **params}, f"overrides {dict(overrides)}")
    plan = [entry for entry in _plan(prof, names, force=force) if entry[0] != notebook]
    if progress:
        _say_training_estimate(prof.name, {**{name: p for name, p, why in plan if why}, notebook: params})
    _execute_plan(prof, plan, progress=progress)
    _say(progress, f"{notebook}: executing with {dict(overrides)} into results/{tag}/")
    seconds = execute_notebook(notebook, params, tag, progress=progress)
    _say(progress, f"{notebook}: done in {seconds:.1f} s")
    pages = {n: _executed_path(tag if n == notebook else prof.name, n) for n in names}
    return build_html(tag, pages, progress=progress)


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
