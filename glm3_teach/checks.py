"""The exercise checker every lesson uses.

Taught in lesson 00 (环境与导览 Setup and tour). An exercise gives the learner a function
to write; ``check`` runs it on a few small inputs beside the package's reference and prints
one friendly verdict: which input, what was expected, what came back, and a hint. It never
stops "Run All" with a bare assertion: it returns a ``CheckResult`` that is truthy when every
case passed, so a solution notebook can write ``assert check(...)``.

Every verdict is also kept as data: ``HISTORY`` lists the ``CheckResult`` of each call in
order, ``last_check()`` is the newest, and ``CheckResult.to_dict()`` is its machine-readable
form (name, passed, cases run, message). The classroom autograder reads them.

What it leaves out: timing limits and randomised cases. Cases are listed by the lesson, so
a learner can rerun exactly the input that failed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

PASS_MARK = "✅"
FAIL_MARK = "❌"
TODO_MARK = "✏️"


@dataclass(frozen=True)
class Case:
    """One input for a checked function: positional ``args``, keyword ``kwargs``, a ``label``."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""

    def describe(self) -> str:
        parts = [_short(a) for a in self.args]
        parts += [f"{k}={_short(v)}" for k, v in self.kwargs.items()]
        text = ", ".join(parts)
        return f"{self.label}: {text}" if self.label else text


@dataclass
class CheckResult:
    """What ``check`` found. Truthy when every case passed."""

    name: str
    passed: bool
    message: str
    cases_run: int = 0

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "passed", "cases_run", "message"}``: the verdict as data (JSON-ready)."""
        return {"name": self.name, "passed": self.passed, "cases_run": self.cases_run, "message": self.message}


HISTORY: list[CheckResult] = []  # every verdict of this session, oldest first


def last_check() -> CheckResult | None:
    """The newest verdict of ``check`` / ``check_value`` in this session (``None`` before the first)."""
    return HISTORY[-1] if HISTORY else None


def _as_case(case: Any) -> Case:
    if isinstance(case, Case):
        return case
    if isinstance(case, dict):
        return Case(kwargs=case)
    if isinstance(case, tuple):
        return Case(args=case)
    return Case(args=(case,))


def _short(value: Any, limit: int = 160) -> str:
    """A one-line description of ``value`` short enough for a message."""
    if isinstance(value, torch.Tensor):
        body = np.array2string(value.detach().cpu().float().numpy(), precision=4, threshold=12, edgeitems=2)
        text = f"tensor(shape={list(value.shape)}, dtype={str(value.dtype).replace('torch.', '')}) {body}"
    elif isinstance(value, np.ndarray):
        body = np.array2string(value, precision=4, threshold=12, edgeitems=2)
        text = f"array(shape={list(value.shape)}, dtype={value.dtype}) {body}"
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_cpu_tensor(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A CPU tensor of the same values; bf16 stays bf16 (NumPy has no bfloat16)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    return torch.as_tensor(np.asarray(value))


def explain_difference(expected: Any, got: Any, atol: float = 1e-5, rtol: float = 1e-5, where: str = "") -> str | None:
    """Return ``None`` when ``got`` matches ``expected``, else a sentence saying how it differs.

    Tensors and arrays are compared by shape, then values within ``atol``/``rtol``; modules by
    their ``state_dict``; lists, tuples and dicts item by item; floats with ``math.isclose``; anything else with ``==``.

    >>> explain_difference([1, 2], [1, 3])
    'at [1]: expected 2, got 3'
    """
    at = f"at {where}: " if where else ""
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        if not isinstance(got, (torch.Tensor, np.ndarray)):
            return f"{at}expected a {type(expected).__name__}, got {type(got).__name__} {_short(got)}"
        exp, out = _as_cpu_tensor(expected), _as_cpu_tensor(got)
        if tuple(exp.shape) != tuple(out.shape):
            return f"{at}expected shape {list(exp.shape)}, got shape {list(out.shape)}"
        if exp.dtype == torch.bool or out.dtype == torch.bool or not (exp.is_floating_point() or out.is_floating_point()):
            wrong = (exp != out).nonzero()
            if len(wrong):
                index = tuple(wrong[0].tolist())
                return f"{at}{len(wrong)} entries differ, first at index {list(index)}: expected {exp[index].item()}, got {out[index].item()}"
            return None
        exp, out = exp.double(), out.double()
        if torch.isnan(out).any() and not torch.isnan(exp).any():
            return f"{at}your result contains NaN"
        close = torch.isclose(out, exp, atol=atol, rtol=rtol, equal_nan=True)
        if not bool(close.all()):
            index = tuple((~close).nonzero()[0].tolist())
            max_diff = (out - exp).abs().nan_to_num(0.0).max().item()
            return (
                f"{at}values differ (largest difference {max_diff:.3g}); first at index {list(index)}: "
                f"expected {exp[index].item():.6g}, got {out[index].item():.6g}"
            )
        return None
    if isinstance(expected, torch.nn.Module):  # a module is its parameters and buffers
        if not isinstance(got, torch.nn.Module):
            return f"{at}expected a {type(expected).__name__}, got {type(got).__name__} {_short(got)}"
        return explain_difference(dict(expected.state_dict()), dict(got.state_dict()), atol, rtol,
                                  f"{where}.state_dict()")
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{at}expected a dict, got {type(got).__name__} {_short(got)}"
        if set(expected) != set(got):
            missing = sorted(map(repr, set(expected) - set(got)))
            extra = sorted(map(repr, set(got) - set(expected)))
            return f"{at}keys differ: missing {missing[:5]}, unexpected {extra[:5]}"
        for key in expected:
            problem = explain_difference(expected[key], got[key], atol, rtol, f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return f"{at}expected a {type(expected).__name__}, got {type(got).__name__} {_short(got)}"
        if len(expected) != len(got):
            return f"{at}expected {len(expected)} items, got {len(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            problem = explain_difference(e, g, atol, rtol, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(expected, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if math.isclose(expected, got, rel_tol=rtol, abs_tol=atol) or (math.isnan(expected) and math.isnan(got)):
            return None
        return f"{at}expected {expected:.6g}, got {got:.6g}"
    try:
        equal = bool(expected == got)
    except Exception:  # e.g. comparing a tensor to a list
        equal = False
    return None if equal else f"{at}expected {_short(expected)}, got {_short(got)}"


def _not_done(value: Any) -> bool:
    return value is None or value is Ellipsis


def _report(result: CheckResult) -> CheckResult:
    print(result.message)
    HISTORY.append(result)
    return result


def check(
    name: str,
    learner_fn: Callable,
    reference_fn: Callable,
    cases: Sequence[Any],
    *,
    hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> CheckResult:
    """Run ``learner_fn`` and ``reference_fn`` on every case and print a verdict.

    ``cases`` holds ``Case`` objects, tuples of positional arguments, dicts of keyword
    arguments, or single values. Each function gets its own deep copy of the inputs, so an
    in-place change cannot leak from one to the other (and is reported, since the reference
    never changes its inputs).
    """
    cases = [_as_case(c) for c in cases]
    if not cases:
        raise ValueError(f"check({name!r}) needs at least one case to run")
    for number, case in enumerate(cases, start=1):
        where = f"case {number} of {len(cases)}"
        expected = reference_fn(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        args, kwargs = copy.deepcopy(case.args), copy.deepcopy(case.kwargs)
        try:
            got = learner_fn(*args, **kwargs)
        except NotImplementedError:
            return _report(CheckResult(name, False, f"{TODO_MARK} {name}: not written yet. Replace the `...` / "
                                       f"`raise NotImplementedError` with your code, then run this cell again.", number - 1))
        except Exception as error:  # the learner's bug: show it, do not crash the notebook
            lines = [f"{FAIL_MARK} {name}: {where} raised {type(error).__name__}: {error}",
                     f"   input:    {case.describe()}"]
            if hint:
                lines.append(f"   hint:     {hint}")
            return _report(CheckResult(name, False, "\n".join(lines), number))
        if _not_done(got) and not _not_done(expected):
            return _report(CheckResult(name, False, f"{TODO_MARK} {name}: your function returned {got!r}. "
                                       f"Finish it so it returns a value, then run this cell again.", number - 1))
        problem = explain_difference(expected, got, atol=atol, rtol=rtol)
        if problem is None:
            problem = explain_difference(case.args, args, atol=0, rtol=0)
            if problem is not None:
                problem = f"your function changed its input in place ({problem}); work on a copy instead"
        if problem is not None:
            lines = [f"{FAIL_MARK} {name}: {where} differs from the reference.",
                     f"   input:    {case.describe()}",
                     f"   expected: {_short(expected)}",
                     f"   got:      {_short(got)}",
                     f"   problem:  {problem}"]
            if hint:
                lines.append(f"   hint:     {hint}")
            return _report(CheckResult(name, False, "\n".join(lines), number))
    plural = "s" if len(cases) > 1 else ""
    return _report(CheckResult(name, True, f"{PASS_MARK} {name}: all {len(cases)} case{plural} match the reference.", len(cases)))


def check_value(name: str, got: Any, expected: Any, *, hint: str = "", atol: float = 1e-5, rtol: float = 1e-5) -> CheckResult:
    """Compare one value the learner computed with the expected one, and print a verdict."""
    if _not_done(got) and not _not_done(expected):
        return _report(CheckResult(name, False, f"{TODO_MARK} {name}: no answer yet (got {got!r}). "
                                   f"Fill in the cell above, then run this one again."))
    problem = explain_difference(expected, got, atol=atol, rtol=rtol)
    if problem is None:
        return _report(CheckResult(name, True, f"{PASS_MARK} {name}: correct.", 1))
    lines = [f"{FAIL_MARK} {name}: not yet.",
             f"   expected: {_short(expected)}",
             f"   got:      {_short(got)}",
             f"   problem:  {problem}"]
    if hint:
        lines.append(f"   hint:     {hint}")
    return _report(CheckResult(name, False, "\n".join(lines), 1))
