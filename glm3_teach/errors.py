"""Explaining bad input: typed settings, files that name themselves, one-line CLI errors.

Used by every lesson's code that reads a setting or a file a learner wrote (lessons 05 and
06 meet it first). Three helpers, so each kind of mistake gets one clear message instead of
a raw traceback or, worse, a silent wrong result:

- ``check_field_types(obj)`` checks every field of a settings dataclass against its type
  annotation: ``"5"`` is not an int, ``"no"`` is not a bool (it would read as true), ``nan``
  and ``inf`` are not settings;
- ``read_json(path)`` reads a JSON file and, when it is broken, names the file and says how
  to fix it;
- ``cli_main(prog, main)`` runs a command line so that a user error (a missing file, a bad
  value) prints one line on stderr and exits with status 2.

What it leaves out: coercing values (``"5"`` is refused, never turned into 5) and schemas
beyond the annotations of the dataclass fields.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Collection, Union



class UnavailableError(RuntimeError):
    """Something asked for that this machine lacks (a CUDA GPU, MPS): the user's setting, not a bug."""


# The exceptions a command line reports as a user error (one line, exit status 2).
USER_ERRORS = (OSError, ValueError, TypeError, KeyError, NotImplementedError, UnicodeError, UnavailableError,
               FloatingPointError)


def _kinds(hint: Any) -> tuple[set[type], bool]:
    """``(plain types allowed, None allowed)`` for an annotation such as ``int | None``."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        kinds, optional = set(), False
        for arg in typing.get_args(hint):
            sub, sub_optional = _kinds(arg)
            kinds |= sub
            optional |= sub_optional
        return kinds, optional
    if hint is type(None):
        return set(), True
    origin = typing.get_origin(hint) or hint
    return ({origin} if isinstance(origin, type) else set()), False


def type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``hint`` (``None`` when it does).

    >>> type_problem("5", int)
    "must be an int, got '5' (a string: write 5 without quotes)"
    >>> type_problem(float("nan"), float) is not None
    True
    """
    kinds, optional = _kinds(hint)
    if value is None:
        return None if optional or not kinds else f"must be {_describe(kinds)}, got None"
    if not kinds or Any in kinds:
        return None
    if isinstance(value, bool):
        ok = bool in kinds
    elif isinstance(value, int):
        ok = bool(kinds & {int, float})
    elif isinstance(value, float):
        ok = float in kinds
        if ok and not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
    else:
        ok = any(isinstance(value, kind) for kind in kinds if kind not in (int, float, bool))
    if ok:
        return _item_problem(value, hint)
    got = repr(value) if isinstance(value, (str, list, dict)) else f"{type(value).__name__} {value!r}"
    fix = ""
    if isinstance(value, str) and kinds & {int, float, bool}:
        fix = (" (a string: write true or false without quotes)" if bool in kinds
               else f" (a string: write {value.strip()} without quotes)" if _is_number(value) else "")
    return f"must be {_describe(kinds)}{' or None' if optional else ''}, got {got}{fix}"


def _item_problem(value: Any, hint: Any) -> str | None:
    """For ``list[str]``-style annotations: what is wrong with the first item of the wrong type."""
    union = typing.get_origin(hint) in (Union, types.UnionType)
    for arg in typing.get_args(hint) if union else (hint,):
        if typing.get_origin(arg) is list and isinstance(value, list) and typing.get_args(arg):
            for index, item in enumerate(value):
                problem = type_problem(item, typing.get_args(arg)[0])
                if problem:
                    return f"item {index} {problem}"
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _describe(kinds: set[type]) -> str:
    names = {bool: "true or false", int: "an int", float: "a number", str: "a string", list: "a list",
             dict: "a table (dict)"}
    if kinds >= {int, float}:
        kinds = kinds - {int}
    return " or ".join(sorted(names.get(kind, kind.__name__) for kind in kinds))


def check_field_types(obj: Any, skip: Collection[str] = ()) -> None:
    """Raise ``ValueError`` naming the first field of the dataclass ``obj`` whose value does not fit its annotation."""
    hints = typing.get_type_hints(type(obj))
    for field in dataclasses.fields(obj):
        if field.name in skip or field.name not in hints:
            continue
        problem = type_problem(getattr(obj, field.name), hints[field.name])
        if problem:
            raise ValueError(f"{type(obj).__name__}.{field.name} {problem}")


def read_json(path: str | Path, fix: str = "restore or rewrite it") -> Any:
    """The JSON data in ``path``; a broken, truncated or non-UTF-8 file is a ``ValueError`` naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} holds broken JSON ({error}); it may be truncated or damaged: {fix}") from None


def cli_main(prog: str, main: Callable[[], int | None]) -> int:
    """Run ``main()``; a user error prints ``prog: error: message`` (one line) on stderr and exits with 2."""
    try:
        return main() or 0
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
        raise SystemExit(2) from None
