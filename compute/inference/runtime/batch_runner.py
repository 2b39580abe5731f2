"""Hangar's batch runner: one mini-batch of a batch scoring job, in a node. Standard library
only (it runs in any environment with Python 3).

It loads the user's score.py, calls `init()` once, then `run(mini_batch)` with the
mini-batch's input files as absolute paths, and writes each row `run` returned as one line
`<mark>\\t<JSON list of fields>` on its output. The mark is the attempt's own (an
environment variable), so a line the script prints itself is never taken for a result.
Hangar reads the rows from the job's output once the job has ended well; any failure is
a non-zero exit, and the traceback is the job's output, as for any job.

`run` may return a list (one row per element: a list or tuple of fields, a dict's
values, or one value), or a pandas DataFrame (one row per row).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

BATCH = Path(os.environ.get("HANGAR_BATCH_DIR", "/hangar/batch"))
INPUTS = Path(os.environ.get("HANGAR_INPUT_DIR", "/hangar/inputs"))


def load_script(path: Path):
    sys.path.insert(0, str(path.parent))  # its own helper modules beside it
    spec = importlib.util.spec_from_file_location("score", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"[hangar] cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("init", "run"):
        if not callable(getattr(module, name, None)):
            raise SystemExit(f"[hangar] score.py has no {name}() function")
    return module


def rows_of(result) -> list[list]:
    if result is None:
        raise SystemExit("[hangar] run(mini_batch) returned None: return one row per input")
    if hasattr(result, "columns") and hasattr(result, "itertuples"):  # a pandas DataFrame
        return [list(row) for row in result.itertuples(index=False)]
    if isinstance(result, (str, bytes)) or not hasattr(result, "__iter__"):
        raise SystemExit(
            f"[hangar] run(mini_batch) returned {type(result).__name__}: return a list of rows"
        )
    rows = []
    for row in result:
        if isinstance(row, dict):
            rows.append(list(row.values()))
        elif isinstance(row, (list, tuple)):
            rows.append(list(row))
        else:
            rows.append([row])
    return rows


def field(value):
    """A JSON field: numbers, text, booleans and nothing as they are, anything else as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return str(value)


def main() -> int:
    mark = os.environ["HANGAR_RESULT_MARK"]
    index = int(os.environ["HANGAR_MINI_BATCH"])
    manifest = json.loads((BATCH / "mini_batches.json").read_text())
    files = [str(INPUTS / name) for name in manifest[index]]
    # The results' own channel: the output as it is now (the script may replace
    # sys.stdout, or print to it in run(); its lines carry no mark).
    results = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    module = load_script(BATCH / "score.py")
    module.init()
    rows = rows_of(module.run(files))
    sys.stdout.flush()
    sys.stderr.flush()
    for row in rows:
        line = json.dumps([field(value) for value in row], ensure_ascii=False)
        results.write(f"{mark}\t{line}\n")
    results.flush()
    print(f"[hangar] mini-batch {index + 1}: {len(files)} files, {len(rows)} rows", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
