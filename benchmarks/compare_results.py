"""Compare two books' results JSON: the same numbers, timings and provenance aside.

    python benchmarks/compare_results.py BEFORE_DIR AFTER_DIR

Reads ``<notebook>.json`` of both folders (e.g. ``results/smoke/``) and prints
every path whose value differs, ignoring the keys in :data:`IGNORED` at any
depth (wall times, code version, hardware, start time). Floats must be equal
exactly. Exits 1 when anything differs or a file is missing on one side.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

IGNORED = frozenset({
    "provenance", "code_version", "hardware", "started", "wall_s", "wall_time_s", "feature_time_s",
    "graph_time_s", "wall time (s)",
})
"""Keys that record when, where and how fast a result was made, not what it is."""


def differences(before: Any, after: Any, path: str = "") -> Iterator[str]:
    """``path: before != after`` for every differing leaf of two JSON values, :data:`IGNORED` keys skipped."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            if key in IGNORED:
                continue
            if key not in before or key not in after:
                yield f"{path}/{key}: only {'after' if key not in before else 'before'}"
            else:
                yield from differences(before[key], after[key], f"{path}/{key}")
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after)):
            yield from differences(b, a, f"{path}[{i}]")
    elif before != after or type(before) is not type(after):
        yield f"{path}: {json.dumps(before)[:80]} != {json.dumps(after)[:80]}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    before_dir, after_dir = (Path(a) for a in argv)
    names = sorted({p.name for p in before_dir.glob("*.json")} | {p.name for p in after_dir.glob("*.json")})
    bad = 0
    for name in names:
        sides = [d / name for d in (before_dir, after_dir)]
        if not all(p.is_file() for p in sides):
            print(f"{name}: missing in {' and '.join(str(p.parent) for p in sides if not p.is_file())}")
            bad += 1
            continue
        found = list(differences(*(json.loads(p.read_text()) for p in sides)))
        print(f"{name}: {'identical' if not found else f'{len(found)} difference(s)'} (timings and provenance aside)")
        for line in found[:20]:
            print(f"  {line}")
        bad += bool(found)
    return 1 if bad or not names else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
