"""The exercise checker every lesson uses.

Taught in lesson 00 (环境与导览 Setup and tour). An exercise gives the learner a function
to write; ``check`` runs it on a few small inputs beside the package's reference and prints
one friendly verdict: which case, what was expected, what came back, and, only once a case
has failed, the hint. It never stops "Run All" with a bare assertion: it returns a
``CheckResult`` that is truthy when every case passed, so a solution notebook can write
``assert check(...)``.

How a verdict reads: a tensor is described by its shape and dtype (and its values only when
it is tiny), followed by the first elements that differ; a bool prints as ``True``/``False``;
an exception raised inside the learner's code names the line that raised it; a dtype that
differs from the reference's is a failure (a float mask where a bool one is expected is not a
mask at all: ``scaled_dot_product_attention`` *adds* it to the scores).

Every verdict is also kept as data: ``HISTORY`` lists the ``CheckResult`` of each call in
order, ``last_check()`` is the newest, and ``CheckResult.to_dict()`` is its machine-readable
form (name, passed, cases run, message). The classroom autograder reads them.

``forbid_repeated_copies(fn, "k", "v")`` wraps a learner's function so that it fails as soon as
any torch operation inside it writes one of those arguments into new memory two or more
times over (what ``repeat_kv`` does); views such as ``expand`` or broadcasting stay free. It
checks the *how* of an exercise that says "never repeat k or v". ``forbid_whole_axis(fn, "k", -2)``
does the same for an exercise that must work on blocks: no new tensor may span the whole key axis
(the full score matrix of an online softmax, for instance). ``forbid_modules(fn, SelfAttention)``
refuses calls of the package's module inside an exercise that asks the learner to write it.

What it leaves out: timing limits and randomised cases. Cases are listed by the lesson, so
a learner can rerun exactly the input that failed.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import sys
import sysconfig
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

PASS_MARK = "✅"
FAIL_MARK = "❌"
TODO_MARK = "✏️"
SHOWN_DIFFERENCES = 3   # how many differing elements a message lists
SMALL_TENSOR = 8        # tensors with at most this many elements are printed with their values


@dataclass(frozen=True)
class Case:
    """One input for a checked function: positional ``args``, keyword ``kwargs``, a ``label``."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""

    def describe(self) -> str:
        """The arguments in one short line: tensors as shape and dtype, other values as ``repr``."""
        parts = [_short(a) for a in self.args]
        parts += [f"{k}={_short(v)}" for k, v in self.kwargs.items()]
        return _clip(", ".join(parts), 200)


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


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dtype_name(value: torch.Tensor | np.ndarray) -> str:
    return str(value.dtype).replace("torch.", "")


def _number(value: Any) -> str:
    """``True`` / ``3`` / ``0.1235``: a scalar as a learner would write it."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, float):
        text = f"{value:.4g}"
        return text if any(c in text for c in ".en") else text + ".0"   # 1.0 stays a float, not 1
    return repr(value)


def _short(value: Any, limit: int = 160) -> str:
    """A one-line description of ``value``: tensors by shape and dtype (values only if tiny).

    >>> _short(torch.zeros(3, 4))
    'tensor [3, 4] float32'
    >>> _short(torch.tensor([0.5, 2.0]))
    'tensor([0.5, 2.0]) float32'
    >>> _short(torch.tensor([True, False]))
    'tensor([True, False]) bool'
    """
    if isinstance(value, (torch.Tensor, np.ndarray)):
        kind = "tensor" if isinstance(value, torch.Tensor) else "array"
        data = value.detach().cpu() if isinstance(value, torch.Tensor) else value
        if data.ndim == 0:
            text = f"{kind}({_number(data.item())}) {_dtype_name(value)}"
        elif _numel(data) == 0:
            text = f"{kind} {list(data.shape)} {_dtype_name(value)} (empty)"
        elif _numel(data) <= SMALL_TENSOR:
            items = data.float().tolist() if isinstance(data, torch.Tensor) and data.dtype == torch.bfloat16 else data.tolist()
            text = f"{kind}({_nested(items)}) {_dtype_name(value)}"
        else:
            text = f"{kind} {list(data.shape)} {_dtype_name(value)}"
    elif isinstance(value, torch.nn.Module):
        text = f"{type(value).__name__} module"
    elif isinstance(value, (list, tuple)) and len(value) > 12 and all(type(v) is int for v in value):
        text = f"{list(value[:8])}"[:-1] + f", ... ({len(value)} ints)]"   # a long list of ids
    elif isinstance(value, (list, tuple)) and _holds_tensor(value):
        items = [_short(v, limit) for v in value]
        if len(items) > 2 and len(set(items)) == 1:    # e.g. one (k, v) pair per layer
            text = f"[{len(items)} x {items[0]}]" if isinstance(value, list) else f"({len(items)} x {items[0]})"
        else:
            inner = ", ".join(items)
            text = f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    elif isinstance(value, dict) and any(isinstance(v, (torch.Tensor, np.ndarray)) for v in value.values()):
        text = "{" + ", ".join(f"{k!r}: {_short(v, limit)}" for k, v in value.items()) + "}"
    else:
        text = repr(value)
    return _clip(text, limit)


def _holds_tensor(value: Any) -> bool:
    """Whether ``value`` is, or a list/tuple at any depth holds, a tensor, an array or a module."""
    if isinstance(value, (torch.Tensor, np.ndarray, torch.nn.Module)):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_tensor(v) for v in value)


def _numel(value: torch.Tensor | np.ndarray) -> int:
    return value.numel() if isinstance(value, torch.Tensor) else int(value.size)


def _nested(items: Any) -> str:
    if isinstance(items, list):
        return "[" + ", ".join(_nested(item) for item in items) + "]"
    return _number(items)


def _as_cpu_tensor(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A CPU tensor of the same values; bf16 stays bf16 (NumPy has no bfloat16)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    return torch.as_tensor(np.asarray(value))


def _dtype_problem(exp: torch.Tensor, out: torch.Tensor) -> str:
    """Why a result with ``out.dtype`` is wrong where ``exp.dtype`` is expected, and how to fix it."""
    said = f"expected dtype {_dtype_name(exp)}, got {_dtype_name(out)}"
    if exp.dtype == torch.bool and out.is_floating_point():
        return (f"{said}. A float tensor is not a True/False mask: F.scaled_dot_product_attention *adds* a float "
                f"attn_mask to the scores (1.0 raises a score by one, 0.0 leaves it: nothing is masked). Return a bool tensor: a comparison such "
                f"as `a <= b`, or `.bool()`")
    if exp.dtype == torch.bool:
        return f"{said}. Return a bool tensor (True/False): a comparison such as `a <= b`, or `.bool()`"
    if exp.is_floating_point() and out.is_floating_point():
        return (f"{said}. Keep the reference's precision: compute in {_dtype_name(exp)} or convert the result "
                f"with `.to(torch.{_dtype_name(exp)})`")
    return f"{said}. Convert with `.to(torch.{_dtype_name(exp)})` once you know where the other dtype came from"


def _tensor_difference(exp: torch.Tensor, out: torch.Tensor, atol: float, rtol: float) -> str | None:
    """Values of two same-shape, same-dtype tensors: ``None`` or which elements differ, the first few listed."""
    if not exp.is_floating_point():
        wrong = exp != out
        largest = ""
    else:
        exp, out = exp.double(), out.double()
        if torch.isnan(out).any() and not torch.isnan(exp).any():
            index = tuple(torch.isnan(out).nonzero()[0].tolist())
            return f"your result contains NaN (first at index {list(index)})"
        wrong = ~torch.isclose(out, exp, atol=atol, rtol=rtol, equal_nan=True)
        largest = f" (largest difference {(out - exp).abs().nan_to_num(0.0).max().item():.3g})"
    if not bool(wrong.any()):
        return None
    where = wrong.nonzero()
    shown = "; ".join(f"{'first at index' if k == 0 else 'then'} {index}: expected {_number(exp[tuple(index)].item())}, "
                      f"got {_number(out[tuple(index)].item())}" for k, index in enumerate(where[:SHOWN_DIFFERENCES].tolist()))
    more = "; ..." if len(where) > SHOWN_DIFFERENCES else ""
    return f"{len(where)} of {exp.numel()} values differ{largest}; {shown}{more}"


def explain_difference(expected: Any, got: Any, atol: float = 1e-5, rtol: float = 1e-5, where: str = "") -> str | None:
    """Return ``None`` when ``got`` matches ``expected``, else a sentence saying how it differs.

    Tensors and arrays are compared by type, shape, dtype, then values within ``atol``/``rtol``
    (exactly for integers and bools); modules by their ``state_dict``; lists, tuples and dicts
    item by item; floats with ``math.isclose``; anything else with ``==``. A 0-d tensor where a
    Python number is expected is a mismatch whose message suggests ``.item()``.

    >>> explain_difference([1, 2], [1, 3])
    'at [1]: expected 2, got 3'
    """
    at = f"at {where}: " if where else ""
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        if not isinstance(got, type(expected)) and not (isinstance(expected, np.ndarray) and isinstance(got, np.ndarray)):
            wanted = "torch.Tensor" if isinstance(expected, torch.Tensor) else "numpy array"
            return f"{at}expected a {wanted}, got {type(got).__name__} {_short(got)}"
        exp, out = _as_cpu_tensor(expected), _as_cpu_tensor(got)
        if tuple(exp.shape) != tuple(out.shape):
            return f"{at}expected shape {list(exp.shape)}, got shape {list(out.shape)}"
        if exp.dtype != out.dtype:
            return f"{at}{_dtype_problem(exp, out)}"
        problem = _tensor_difference(exp, out, atol, rtol)
        return None if problem is None else f"{at}{problem}"
    if isinstance(expected, torch.nn.Module):  # a module is its parameters and buffers
        if not isinstance(got, torch.nn.Module):
            return f"{at}expected a {type(expected).__name__}, got {type(got).__name__} {_short(got)}"
        return explain_difference(dict(expected.state_dict()), dict(got.state_dict()), atol, rtol,
                                  f"{where}.state_dict()")
    if isinstance(got, (torch.Tensor, np.ndarray)) and isinstance(expected, (bool, int, float)):
        kind = "bool" if isinstance(expected, bool) else type(expected).__name__
        fix = "call `.item()` on it to get a Python number" if _numel(got) == 1 else "the answer is one number"
        return f"{at}expected a Python {kind} ({_number(expected)}), got {_short(got)}: {fix}"
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
            return f"{at}expected {len(expected)} item{'' if len(expected) == 1 else 's'}, got {len(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            problem = explain_difference(e, g, atol, rtol, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(expected, bool) and not isinstance(got, bool):
        return f"{at}expected {expected} (a bool), got {type(got).__name__} {_short(got)}: return True or False"
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


_LIBRARY_DIRS = tuple({str(Path(__file__).resolve().parent), sysconfig.get_paths()["stdlib"],
                       sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], sys.prefix, sys.base_prefix})


def _learner_line(error: BaseException) -> str | None:
    """``line 3 of count_han: return ids[10]``: the deepest frame of the traceback outside libraries."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not str(Path(frame.filename).resolve()).startswith(_LIBRARY_DIRS) and "site-packages" not in frame.filename]
    if not frames:
        return None
    frame = frames[-1]
    code = f": {frame.line.strip()}" if frame.line else ""
    return f"line {frame.lineno} of {frame.name}{code}"


def _report(result: CheckResult) -> CheckResult:
    print(result.message)
    HISTORY.append(result)
    return result


def _case_name(number: int, total: int, case: Case) -> str:
    return f"case {number} of {total}" + (f" ({case.label})" if case.label else "")


def _failure(name: str, headline: str, rows: list[tuple[str, str]], hint: str, cases_run: int) -> CheckResult:
    """One failure message: a headline, then aligned ``label: text`` rows, the hint last."""
    if hint:
        rows = rows + [("hint", hint)]
    lines = [f"{FAIL_MARK} {name}: {headline}"] + [f"   {label + ':':<9} {text}" for label, text in rows]
    return CheckResult(name, False, "\n".join(lines), cases_run)


def _comparison_rows(expected: Any, got: Any, problem: str) -> list[tuple[str, str]]:
    """``expected`` / ``got`` rows, and a ``problem`` row unless it only repeats them."""
    rows = [("expected", _short(expected)), ("got", _short(got))]
    if problem != f"expected {rows[0][1]}, got {rows[1][1]}":
        rows.append(("problem", problem))
    return rows


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

    ``cases`` holds ``Case`` objects (give them a ``label`` that says what the case tests),
    tuples of positional arguments, dicts of keyword arguments, or single values. Each function
    gets its own deep copy of the inputs, so an in-place change cannot leak from one to the other
    (and is reported, since the reference never changes its inputs). ``hint`` is printed only
    when a case fails. Tensors must match the reference's dtype as well as its values.
    """
    cases = [_as_case(c) for c in cases]
    if not cases:
        raise ValueError(f"check({name!r}) needs at least one case to run")
    for number, case in enumerate(cases, start=1):
        which = _case_name(number, len(cases), case)
        expected = reference_fn(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        args, kwargs = copy.deepcopy(case.args), copy.deepcopy(case.kwargs)
        try:
            got = learner_fn(*args, **kwargs)
        except NotImplementedError:
            return _report(CheckResult(name, False, f"{TODO_MARK} {name}: not written yet. Replace the `...` / "
                                       f"`raise NotImplementedError` with your code, then run this cell again.", number - 1))
        except Exception as error:  # the learner's bug: show it, do not crash the notebook
            rows = [("input", case.describe())]
            line = _learner_line(error)
            if line:
                rows.append(("where", line))
            return _report(_failure(name, f"{which} raised {type(error).__name__}: {_clip(str(error), 300)}",
                                    rows, hint, number))
        if _not_done(got) and not _not_done(expected):
            return _report(CheckResult(name, False, f"{TODO_MARK} {name}: your function returned {got!r}. "
                                       f"Finish it so it returns a value, then run this cell again.", number - 1))
        problem = explain_difference(expected, got, atol=atol, rtol=rtol)
        if problem is None:
            problem = explain_difference(case.args, args, atol=0, rtol=0)
            if problem is not None:
                problem = f"your function changed its input in place ({problem}); work on a copy instead"
        if problem is not None:
            rows = [("input", case.describe()), *_comparison_rows(expected, got, problem)]
            return _report(_failure(name, f"{which} differs from the reference.", rows, hint, number))
    verdict = f"all {len(cases)} cases match" if len(cases) > 1 else "the 1 case matches"
    return _report(CheckResult(name, True, f"{PASS_MARK} {name}: {verdict} the reference.", len(cases)))


def check_value(name: str, got: Any, expected: Any, *, hint: str = "", atol: float = 1e-5, rtol: float = 1e-5) -> CheckResult:
    """Compare one value the learner computed with the expected one, and print a verdict (the hint only on failure)."""
    if _not_done(got) and not _not_done(expected):
        return _report(CheckResult(name, False, f"{TODO_MARK} {name}: no answer yet (got {got!r}). "
                                   f"Fill in the cell above, then run this one again."))
    problem = explain_difference(expected, got, atol=atol, rtol=rtol)
    if problem is None:
        return _report(CheckResult(name, True, f"{PASS_MARK} {name}: correct.", 1))
    return _report(_failure(name, "not yet.", _comparison_rows(expected, got, problem), hint, 1))


class RepeatedCopyError(RuntimeError):
    """Raised inside a function wrapped by ``forbid_repeated_copies`` when it copies a watched argument n times over."""


class _RepeatWatch(TorchFunctionMode):
    """Fails on the first torch operation whose result holds a watched tensor's values n >= 2 times in new memory."""

    def __init__(self, watched: dict[str, torch.Tensor]):
        super().__init__()
        self.watched = watched

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for result in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(result, torch.Tensor) and not result.is_meta:
                self._inspect(result, getattr(func, "__name__", str(func)))
        return out

    def _inspect(self, result: torch.Tensor, op: str) -> None:
        for name, tensor in self.watched.items():
            n = tensor.numel()
            if n == 0 or result.dtype != tensor.dtype or result.numel() < 2 * n or result.numel() % n:
                continue
            if result.untyped_storage().data_ptr() == tensor.untyped_storage().data_ptr():
                continue  # a view of the argument (expand, broadcasting, None-indexing): no new memory
            times = result.numel() // n
            repeated = tensor.detach().flatten().repeat(times).sort().values
            if torch.equal(result.detach().flatten().sort().values, repeated):
                raise RepeatedCopyError(
                    f"`{op}` made a new {list(result.shape)} tensor that holds {name} {times} times over; "
                    f"keep {name} as it is and let it broadcast (a size-1 dim, e.g. {name}[:, :, None]) instead")


def forbid_repeated_copies(fn: Callable, *names: str) -> Callable:
    """``fn`` wrapped so that a call fails with ``RepeatedCopyError`` if it copies an argument named in ``names``.

    "Copies" means: some torch operation inside ``fn`` returns a tensor in new memory whose
    values are those of the argument repeated two or more times (``repeat_kv``,
    ``repeat_interleave``, ``expand(...).reshape(...)``). Views cost no memory and are
    allowed. Used by ``check`` like any learner function: the failure names the line.

    >>> import torch
    >>> wrapped = forbid_repeated_copies(lambda k: k.repeat(2, 1), "k")
    >>> wrapped(torch.ones(2, 2))
    Traceback (most recent call last):
    ...
    glm3_teach.checks.RepeatedCopyError: `repeat` made a new [4, 2] tensor that holds k 2 times over; keep k as it is and let it broadcast (a size-1 dim, e.g. k[:, :, None]) instead
    """
    signature = inspect.signature(fn)
    missing = [name for name in names if name not in signature.parameters]
    if missing:
        raise ValueError(f"forbid_repeated_copies: {getattr(fn, '__name__', fn)} has no argument {missing}; "
                         f"its arguments are {list(signature.parameters)}")

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        watched = {name: bound.arguments[name] for name in names
                   if isinstance(bound.arguments.get(name), torch.Tensor)}
        with _RepeatWatch(watched):
            return fn(*args, **kwargs)

    return wrapped


class WholeAxisError(RuntimeError):
    """Raised inside a function wrapped by ``forbid_whole_axis`` when a new tensor spans a watched axis."""


class _AxisWatch(TorchFunctionMode):
    """Fails on the first torch operation that returns, in new memory, a tensor with a dim of the watched size."""

    def __init__(self, name: str, tensor: torch.Tensor, axis: int):
        super().__init__()
        self.name, self.tensor, self.size = name, tensor, tensor.shape[axis]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for result in out if isinstance(out, (tuple, list)) else (out,):
            if (isinstance(result, torch.Tensor) and not result.is_meta and self.size in result.shape
                    and result.untyped_storage().data_ptr() != self.tensor.untyped_storage().data_ptr()):
                raise WholeAxisError(
                    f"`{getattr(func, '__name__', func)}` made a new {list(result.shape)} tensor as long as all "
                    f"{self.size} rows of {self.name}; work on one block at a time (a slice such as "
                    f"{self.name}[..., start:start + block_size, :] is a view and costs nothing)")
        return out


def forbid_whole_axis(fn: Callable, name: str, axis: int) -> Callable:
    """``fn`` wrapped so that a call fails with ``WholeAxisError`` if a torch operation inside it returns
    a tensor in new memory that has a dim as long as axis ``axis`` of the argument ``name``.

    Views of the argument (slices, transposes) are allowed. Choose the case sizes so that no other
    dim of a correct solution has that length.
    """
    signature = inspect.signature(fn)
    if name not in signature.parameters:
        raise ValueError(f"forbid_whole_axis: {getattr(fn, '__name__', fn)} has no argument {name!r}; "
                         f"its arguments are {list(signature.parameters)}")

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        watched = signature.bind(*args, **kwargs).arguments[name]
        with _AxisWatch(name, watched, axis):
            return fn(*args, **kwargs)

    return wrapped


class ForbiddenModuleError(RuntimeError):
    """Raised inside a function wrapped by ``forbid_modules`` when it calls one of the refused modules."""


def forbid_modules(fn: Callable, *classes: type) -> Callable:
    """``fn`` wrapped so that calling an instance of ``classes`` (subclasses included) inside it fails.

    For an exercise that asks for what such a module computes: calling the package's module
    would pass the comparison without writing anything. Other modules, such as its submodules,
    may be called freely.
    """
    if not classes or not all(isinstance(c, type) and issubclass(c, torch.nn.Module) for c in classes):
        raise ValueError(f"forbid_modules needs nn.Module classes, got {classes!r}")
    names = " or ".join(c.__name__ for c in classes)

    def refuse(module: torch.nn.Module, inputs: Any) -> None:
        if isinstance(module, classes):
            raise ForbiddenModuleError(f"this exercise asks you to write what {names} computes, so calling "
                                       f"{type(module).__name__} is not allowed here; call its parts instead")

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        handle = torch.nn.modules.module.register_module_forward_pre_hook(refuse)
        try:
            return fn(*args, **kwargs)
        finally:
            handle.remove()

    return wrapped
