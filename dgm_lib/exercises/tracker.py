"""What `check()` found, remembered: the progress report and `use_or_reference`.

Every `check(name, fn)` records its verdict: "passed", "failing" or "not done" (the stub still
raises NotImplementedError). Verdicts live in memory and in a small JSON file, `.dgm_progress.json`
in the working directory (the notebook's folder in Jupyter, so a chapter and its exercise notebook
keep separate records), or the file named by the environment variable DGM_PROGRESS_FILE (empty:
memory only). A restarted kernel reads the file; a file that cannot be read or written is ignored
and the verdicts stay in memory.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

from .registry import chapter_exercises, checks_for, is_open_question, reference_for

PASSED, FAILING, NOT_DONE = "passed", "failing", "not done"
ENV_FILE = "DGM_PROGRESS_FILE"
DEFAULT_FILE = ".dgm_progress.json"
STATE_TEXT = {
    PASSED: "passed",
    FAILING: "failing: see its check's hint",
    NOT_DONE: "not done yet",
}
OPEN_TEXT = "open question: compare with the solution"

_VERDICTS: dict[str, str] = {}  # this kernel's verdicts, newest last
_PASSED_FUNCTIONS: dict[str, Callable] = {}  # the function whose check passed, per exercise


def progress_file() -> Path | None:
    """Where verdicts are saved: $DGM_PROGRESS_FILE, else ./.dgm_progress.json; None if disabled."""
    value = os.environ.get(ENV_FILE)
    if value is None:
        return Path.cwd() / DEFAULT_FILE
    return Path(value) if value.strip() else None


def _read_file(path: Path | None) -> dict[str, str]:
    """The verdicts saved in `path`; {} when it is missing, unreadable or not such a file."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        k: v for k, v in data.items() if isinstance(k, str) and v in (PASSED, FAILING, NOT_DONE)
    }


def _write_file(path: Path | None, verdicts: dict[str, str]) -> bool:
    """Save `verdicts` to `path` atomically; False (and nothing raised) when that fails."""
    if path is None:
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dgm_progress.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(verdicts, handle, indent=1, sort_keys=True)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        return False
    return True


def record(name: str, state: str, fn: Callable | None = None) -> None:
    """Remember the verdict `state` of exercise `name` for `fn` (in memory and in the file).

    Args:
        name: the exercise, "chapter.exercise".
        state: PASSED, FAILING or NOT_DONE.
        fn: the function that was checked (remembered when it passed, for `use_or_reference`).
    """
    if state not in STATE_TEXT:
        raise ValueError(f"state={state!r}: expected one of {sorted(STATE_TEXT)}")
    _VERDICTS[name] = state
    if state == PASSED and fn is not None:
        _PASSED_FUNCTIONS[name] = fn
    else:
        _PASSED_FUNCTIONS.pop(name, None)
    path = progress_file()
    _write_file(path, {**_read_file(path), name: state})


def verdicts() -> dict[str, str]:
    """Every recorded verdict: the file's, overridden by this kernel's."""
    return {**_read_file(progress_file()), **_VERDICTS}


def forget() -> None:
    """Forget this kernel's verdicts (the file keeps its own; a restarted kernel starts so)."""
    _VERDICTS.clear()
    _PASSED_FUNCTIONS.clear()


def progress_rows(*chapters: str) -> list[tuple[str, str]]:
    """(exercise, state text) for every exercise of `chapters`, in the order they were declared."""
    known = verdicts()
    rows = []
    for chapter in chapters:
        for name in chapter_exercises(chapter):
            if is_open_question(name):
                rows.append((name, OPEN_TEXT))
            else:
                rows.append((name, STATE_TEXT[known.get(name, NOT_DONE)]))
    return rows


def progress(*chapters: str) -> None:
    """Print one table of the exercises of `chapters` and their state, re-running nothing.

    A state is the verdict of the exercise's last `check()`: passed, failing, or not done yet
    (never checked, or still the stub); open questions have no automatic check.

    Args:
        chapters: chapter prefixes of the exercise names, e.g. "kl_duality".
    """
    rows = progress_rows(*chapters)
    if not rows:
        raise ValueError(f"no exercises registered for chapters {chapters!r}")
    checked = [state for name, state in rows if state != OPEN_TEXT]
    done = sum(state == STATE_TEXT[PASSED] for state in checked)
    width = max(len(name) for name, _ in rows)
    lines = [
        f"Progress: {done} of {len(checked)} checked exercises pass "
        "(the last check() of each; nothing is re-run)",
        f"{'exercise':{width}s}  state",
        *(f"{name:{width}s}  {state}" for name, state in rows),
    ]
    print("\n".join(lines))


def use_or_reference(name: str, fn: Callable, reference: Callable | None = None) -> Callable:
    """The student's `fn` if its check passed in this kernel, else the library's reference.

    A chapter cell that builds on an exercise calls this instead of using `fn` directly: until
    `check(name, fn)` has passed (for this very function), it prints a note and returns the
    reference, so the notebook runs on without a traceback.

    Args:
        name: the exercise, "chapter.exercise".
        fn: the student's function.
        reference: the fallback (default: the one registered with `register_reference(name)`).

    Returns:
        `fn` or the reference.
    """
    checks_for(name)  # ValueError for an unknown name or an open question
    if reference is None:
        reference = reference_for(name)
        if reference is None:
            raise ValueError(f"exercise {name!r} has no registered reference: pass reference=")
    passed = _PASSED_FUNCTIONS.get(name)
    if passed is fn:
        return fn
    what = getattr(fn, "__name__", "your function")
    why = (
        f"{what} changed since its check passed: run check({name!r}, {what}) again"
        if passed is not None
        else f"until check({name!r}, {what}) passes"
    )
    print(f"⏳ this cell waits for exercise {name}: {why}, it uses dgm_lib's reference meanwhile.")
    return reference
