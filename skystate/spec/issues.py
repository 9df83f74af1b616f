"""Pydantic validation errors → SpecIssues a user can act on.

Each issue names the file, the line of the offending key (or of the closest
written ancestor, for a missing key), the dotted field path and one sentence:
no pydantic boilerplate, unknown fields get a did-you-mean.
"""

from __future__ import annotations

import types
import typing
from typing import Any, TypeVar, Union

from pydantic import BaseModel, ValidationError

from skystate.exceptions import SpecIssue
from skystate.spec.suggest import did_you_mean
from skystate.spec.yaml_lines import YamlDoc

M = TypeVar("M", bound=BaseModel)

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "mapping_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "none_required": "null",
}


def field_path(path: tuple[Any, ...]) -> str:
    """``("resources", "any_of", 0, "cpus")`` → ``resources.any_of[0].cpus``."""
    out = ""
    for part in path:
        if part == "[key]":  # pydantic's marker of an error in a mapping key
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _arms(tp: Any) -> list[Any]:
    """The non-None arms of a Union (or ``[tp]``), ``Annotated`` unwrapped."""
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a
                for a in typing.get_args(tp)]
        return [a for a in args if a is not type(None)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def field_names(model: type[BaseModel]) -> list[str]:
    """The names a user may write: aliases where a field has one."""
    names = [f.alias or name for name, f in model.model_fields.items()]
    return names + list(getattr(model, "OTHER_NAMES", ()))


def _field(model: type[BaseModel], key: Any) -> Any:
    for name, info in model.model_fields.items():
        if key == name or key == info.alias:
            return info.annotation
    return None


def _walk(
    model: type[BaseModel], loc: tuple[Any, ...], exact: bool = False
) -> tuple[tuple[Any, ...], Any]:
    """Drop pydantic's union-arm tags from ``loc``; return (path, type at the parent).

    The type returned is the one the last path element belongs to (used to list
    valid field names for an unknown key). ``exact``: the error was ``located`` by a
    validator, so a part that names no arm of a union is a key, not a tag.
    """
    path: list[Any] = []
    tp: Any = model
    parent: Any = model
    i = 0
    while i < len(loc):
        part = loc[i]
        arms = _arms(tp)
        if len(arms) > 1:  # a union: pydantic adds the arm's name to loc
            chosen = next((a for a in arms if _is_model(a) and a.__name__ == part), None)
            if chosen is None and isinstance(part, str):
                prefix = part.split("[", 1)[0]
                chosen = next(
                    (a for a in arms if getattr(typing.get_origin(a), "__name__", "") == prefix),
                    None,
                )
            if chosen is not None or not exact:
                tp = chosen
                i += 1
                continue
            arms = [a for a in arms if typing.get_origin(a) is dict] or arms
        tp = arms[0] if arms else None
        parent = tp
        path.append(part)
        if _is_model(tp):
            tp = _field(tp, part)
        else:
            origin = typing.get_origin(tp)
            args = typing.get_args(tp)
            if origin in (list, tuple, set, frozenset) and args:
                tp = args[0]
            elif origin is dict and len(args) == 2:
                tp = args[1]
            else:
                tp = None
        i += 1
    return tuple(path), parent


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind in ("value_error", "assertion_error", "located") and "error" in ctx:
        return str(ctx["error"])
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, got {_short(value)}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {_short(value)}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        word = {
            "greater_than": "greater than",
            "greater_than_equal": "at least",
            "less_than": "less than",
            "less_than_equal": "at most",
        }[kind]
        limit = next(iter(ctx.values()), "?")
        return f"must be {word} {limit}, got {_short(value)}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    msg = str(err.get("msg", "is invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg[0].lower() + msg[1:] if msg[:1].isupper() and msg[1:2].islower() else msg


def _once(message: str, path: tuple[Any, ...]) -> str:
    """The message without a leading repeat of the field's own name (it is named once)."""
    names = [p for p in path if isinstance(p, str) and p != "[key]"]
    if names:
        for lead in (f"{names[-1]}: ", f"{names[-1]} "):
            if message.startswith(lead) and not message.startswith(f"{names[-1]} is "):
                return message[len(lead):]
    return message


def translate(
    error: ValidationError,
    model: type[BaseModel],
    doc: YamlDoc,
    prefix: tuple[Any, ...] = (),
    line_doc: YamlDoc | None = None,
) -> list[SpecIssue]:
    """SpecIssues for every error of ``error`` (raised validating ``model``).

    ``prefix`` is where the validated data sits in ``doc``; ``line_doc`` (default
    ``doc``) gives the lines, e.g. when the data was merged from several files.
    """
    lines = line_doc or doc
    grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    unknown: list[SpecIssue] = []
    for err in error.errors(include_url=False):
        path, parent = _walk(model, tuple(err["loc"]), exact=err["type"] == "located")
        full = (*prefix, *path)
        if err["type"] == "extra_forbidden":
            key = path[-1] if path else "?"
            names = field_names(parent) if _is_model(parent) else []
            unknown.append(
                SpecIssue(
                    lines.file,
                    lines.line_of(full),
                    field_path(full),
                    f"unknown field {str(key)!r}{did_you_mean(str(key), names)}",
                )
            )
            continue
        grouped.setdefault(full, []).append(err)
    issues = list(unknown)
    for full, errs in grouped.items():
        if errs[0]["type"] == "missing":
            name = full[-1] if full else "?"
            issues.append(
                SpecIssue(lines.file, lines.line_of(full[:-1]), field_path(full),
                          f"missing required field {str(name)!r}")
            )
            continue
        expected = [_EXPECTED[e["type"]] for e in errs if e["type"] in _EXPECTED]
        if len(errs) > 1 and len(expected) == len(errs):  # a union: no arm matched
            unique = list(dict.fromkeys(expected))
            text = ", ".join(unique[:-1]) + " or " + unique[-1] if len(unique) > 1 else unique[0]
            message = f"must be {text}, got {_short(errs[0].get('input'))}"
        else:  # the most specific message: a validator's own, else the first
            chosen = next((e for e in errs if e["type"] not in _EXPECTED), errs[0])
            message = _once(_message(chosen), full)
        issues.append(SpecIssue(lines.file, lines.line_of(full), field_path(full), message))
    issues.sort(key=lambda i: i.line or 0)
    return issues


def validate(
    model: type[M],
    data: Any,
    doc: YamlDoc,
    issues: list[SpecIssue],
    prefix: tuple[Any, ...] = (),
) -> M | None:
    """``model.model_validate(data)``; on failure, append translated issues, return None."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        issues.extend(translate(err, model, doc, prefix))
        return None


def _custom(message: str) -> Any:
    from pydantic_core import PydanticCustomError

    return PydanticCustomError("located", "{error}", {"error": message})


def validate_rest(
    title: str, handler: Any, value: Any, errors: list[tuple[tuple[Any, ...], str]]
) -> Any:
    """``handler(value)`` (a wrap validator's), raising ``errors`` together with its own.

    The keys the errors name are left out of ``value`` first, so the rest is still
    checked and every problem is reported at once, each once.
    """
    if not errors:
        return handler(value)
    from pydantic_core import InitErrorDetails

    named = {path[0] for path, _ in errors if path}
    rest = {k: v for k, v in value.items() if k not in named} if isinstance(value, dict) else value
    details = [InitErrorDetails(type=_custom(message), loc=path, input=None)
               for path, message in errors]
    try:
        handler(rest)
    except ValidationError as err:
        for e in err.errors(include_url=False):
            if e["type"] == "located":
                details.append(InitErrorDetails(type=_custom(e["msg"]), loc=e["loc"], input=None))
            else:
                extra = {"ctx": e["ctx"]} if e.get("ctx") else {}
                details.append(InitErrorDetails(type=e["type"], loc=e["loc"],  # type: ignore
                                                input=e.get("input"), **extra))  # type: ignore
    raise ValidationError.from_exception_data(title, details)


def located(title: str, errors: list[tuple[tuple[Any, ...], str]]) -> ValidationError:
    """A ValidationError with one error per ``(path, message)``, for a validator to raise.

    Raised inside a model validator, pydantic prefixes each path with the model's own
    location, so every message lands on the line of its exact field (and all at once).
    """
    from pydantic_core import InitErrorDetails

    return ValidationError.from_exception_data(title, [
        InitErrorDetails(type=_custom(message), loc=path, input=None) for path, message in errors
    ])
