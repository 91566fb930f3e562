"""Code version, hardware and atomic writes: what every artifact stores beside itself.

:func:`code_hash` is the one invalidation key of the project: the compute
cache (:mod:`modgraph.cache`) and the book's stamps (:mod:`modgraph.book`)
both key a result on the source of the code it depends on -- the modules it
names and every module of their package those import, directly or not -- and
on the installed versions of :data:`LIBRARIES`.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import modgraph
from modgraph import paths


def code_version() -> str:
    """``modgraph <version>`` plus the git commit (``+dirty`` when the tree has edits)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=paths.root(),
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=paths.root(),
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        return f"{modgraph.__version__}+{commit}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return modgraph.__version__


LIBRARIES = ("torch", "torchvision", "numpy")
"""Installed libraries whose versions are part of every :func:`code_hash`."""


def module_file(name: str) -> Path | None:
    """The source file of module ``name`` (a package: its ``__init__.py``), found without importing it; ``None``
    when ``name`` is not a module with Python source (an attribute, a compiled module)."""
    top, *rest = name.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    if not rest:
        return Path(spec.origin)
    if not spec.submodule_search_locations:
        return None
    path = Path(spec.origin).parent.joinpath(*rest)
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path, name: str) -> Iterable[str]:
    """Names of the modules (or module attributes) the source at ``path`` of module ``name`` imports anywhere,
    ``TYPE_CHECKING`` blocks aside."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    todo: list[ast.AST] = [ast.parse(path.read_bytes(), filename=str(path))]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        todo.extend(ast.iter_child_nodes(node))


def code_files(modules: Sequence[str]) -> dict[str, Path]:
    """Module name -> source file of ``modules`` and of every module of their top-level packages they import,
    directly or not (with the packages' ``__init__.py`` on the way); ``ValueError`` for a module without source."""
    files: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in files:
            continue
        path = module_file(name)
        if path is None:
            if name in modules:
                raise ValueError(f"no Python source for module {name!r}")
            continue
        files[name] = path
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(m for m in _imported(path, name) if m.split(".")[0] == parts[0])
    return files


def code_hash(modules: Sequence[str]) -> str:
    """SHA-256 (16 hex digits) of the code a result depends on: the source of :func:`code_files` of ``modules``
    and the installed versions of :data:`LIBRARIES`."""
    digest = hashlib.sha256()
    for name, path in sorted(code_files(modules).items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    for library in LIBRARIES:
        try:
            version = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{library}=={version}\0".encode())
    return digest.hexdigest()[:16]


def hardware() -> dict[str, Any]:
    """Device description: CPU model and count, GPU name when CUDA is used."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: Path) -> None:
    """``ValueError`` unless :func:`atomic_write_bytes` could write ``path`` (its folder is created).

    For callers that write a result at the end of a long computation: check first.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output {path} is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".check")
    except OSError as err:
        raise ValueError(f"cannot write output {path}: {err.strerror or err}") from None
    os.close(fd)
    os.unlink(tmp)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n").encode())


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Atomically ``torch.save`` ``obj`` to ``path``."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
