"""Pydantic's validation errors as a TOML user reads them: one line per mistake.

Each line names the dotted location in the file, what is wrong and the value found. A
validator that finds several problems at once raises a ``PydanticCustomError`` of type
``innloop_many`` whose ``problems`` context lists ``(location, words, value)`` tuples;
they are unfolded here so that every problem gets its own line. `Spec` is the rules every
section of the file shares, which decide what those errors are.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

__all__ = ["NO_VALUE", "Problem", "Spec", "error_lines", "problems_of"]

# one mistake: where (relative to the error's own location), what is wrong, the value found or `NO_VALUE`
Problem = tuple[tuple[int | str, ...], str, Any]


class Spec(BaseModel):
    """Shared rules: unknown keys are mistakes, values keep their TOML type (strict: ``"10"``
    is not an integer, ``true`` is not 1), NaN/inf are refused and a loaded config is immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


NO_VALUE = object()  # marks a mistake with no value to show (missing or unknown key)
_WORDS = {  # strict mode: wrong TOML types all arrive as *_type errors
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "list_type": "must be an array",
    "too_short": "must not be empty",
}
_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}  # pydantic's ctx key for each kind of bound


def _model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model that owns the keys at ``loc`` (list indices skipped), for key suggestions."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        hint = field.annotation
        model = next((a for a in (hint, *get_args(hint)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return model


def _describe(root: type[BaseModel], err: ErrorDetails) -> tuple[str, Any]:
    """Pydantic's error as (what is wrong, value found or `NO_VALUE`) in the words of a TOML file."""
    kind, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "required key is missing", NO_VALUE
    if kind == "extra_forbidden":
        owner = _model_at(root, err["loc"][:-1])
        close = difflib.get_close_matches(str(err["loc"][-1]), list(owner.model_fields) if owner else [], n=1)
        return "unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""), NO_VALUE
    if kind.startswith(("greater_than", "less_than")) and (key := next((k for k in _BOUNDS if k in ctx), None)):
        return f"must be {_BOUNDS[key]} {ctx[key]:g}", got
    if kind == "value_error":
        return str(ctx.get("error", err["msg"])), got
    if kind == "literal_error" and "expected" in ctx:
        return f"must be one of {ctx['expected']}", got
    return _WORDS.get(kind, err["msg"]), got


def _line(loc: Sequence[int | str], message: str, got: Any = NO_VALUE) -> str:
    where = ".".join(str(part) for part in loc) or "(top level)"
    if got is NO_VALUE:
        return f"  - {where}: {message}"
    shown = repr(got)
    return f"  - {where}: {message} (got {shown if len(shown) <= 80 else shown[:77] + '...'})"


def problems_of(exc: ValidationError, root: type[BaseModel], at: Sequence[int | str] = ()) -> list[Problem]:
    """``exc``'s mistakes as ``(location, what is wrong, value)`` problems, locations relative
    to ``at``, where ``exc`` was raised inside ``root``.

    A validator wrapping another (a list whose entries are checked one by one) turns the
    inner mistakes into problems with this and raises them together with problems of its
    own in one ``innloop_many`` error: otherwise a failed entry would hide every check that
    needs the whole list, and the user would fix the file in two rounds.
    """
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        many = (err.get("ctx") or {}).get("problems")
        if err["type"] == "innloop_many" and many:
            out += [((*err["loc"], *sub), message, got) for sub, message, got in many]
        else:
            whole = err.copy()  # `_describe` looks up the keys a model has by the full location
            whole["loc"] = (*at, *err["loc"])
            out.append((tuple(err["loc"]), *_describe(root, whole)))
    return out


def error_lines(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per mistake in ``exc``, raised while validating ``root``."""
    return [_line(loc, message, got) for loc, message, got in problems_of(exc, root)]
