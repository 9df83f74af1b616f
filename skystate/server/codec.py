"""Return values and exceptions across the process boundary, as JSON.

``sky.get`` must return the seed's values (tuples, ``JobStatus``, ``ResourceHandle``,
dicts keyed by job id) and raise the original exception type with its attributes
(``failover_history`` is a list of exceptions), so plain ``json.dumps`` is not enough.
Tagged objects name their class; decoding imports only ``skystate`` modules and
builtins, never an arbitrary module named by the peer.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import importlib
import traceback
from typing import Any

_SAFE_PREFIXES = ("skystate.", "click.")


def encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)) and not isinstance(
            value, enum.Enum):
        return value
    if isinstance(value, enum.Enum):
        return {"__enum__": _qualname(type(value)), "value": value.value}
    if isinstance(value, BaseException):
        return {"__exc__": encode_error(value, with_traceback=False)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"__map__": {k: encode(v) for k, v in value.items()}}
        return {"__items__": [[encode(k), encode(v)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__dc__": _qualname(type(value)), "fields": fields}
    if hasattr(value, "to_dict"):
        return {"__obj__": _qualname(type(value)), "data": encode(value.to_dict())}
    if hasattr(value, "model_dump"):
        return {"__model__": _qualname(type(value)), "data": value.model_dump(mode="json")}
    raise TypeError(f"cannot send a {type(value).__name__} as a request result")


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__map__" in value:
        return {k: decode(v) for k, v in value["__map__"].items()}
    if "__items__" in value:
        return {decode(k): decode(v) for k, v in value["__items__"]}
    if "__tuple__" in value:
        return tuple(decode(v) for v in value["__tuple__"])
    if "__enum__" in value:
        return _class(value["__enum__"])(value["value"])
    if "__exc__" in value:
        return decode_error(value["__exc__"])
    if "__dc__" in value:
        return _class(value["__dc__"])(**{k: decode(v) for k, v in value["fields"].items()})
    if "__obj__" in value:
        cls = _class(value["__obj__"])
        data = decode(value["data"])
        return cls.from_dict(data) if hasattr(cls, "from_dict") else cls(**data)
    if "__model__" in value:
        return _class(value["__model__"]).model_validate(value["data"])
    return value  # a plain dict from an older peer


def encode_error(exc: BaseException, *, with_traceback: bool = True) -> dict[str, Any]:
    error = {
        "type": _qualname(type(exc)),
        "message": str(exc),
        "args": [_encode_or_repr(a) for a in exc.args],
        "attrs": {key: _encode_or_repr(val) for key, val in vars(exc).items()},
    }
    if with_traceback:
        error["traceback"] = "".join(traceback.format_exception(exc))
    return error


def decode_error(error: dict[str, Any]) -> BaseException:
    """The original exception type with its attributes; RuntimeError if unknown."""
    try:
        cls = _class(error["type"])
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(error["type"])
    except (ImportError, AttributeError, TypeError, ValueError):
        return RuntimeError(f"{error.get('type')}: {error.get('message')}")
    exc = cls.__new__(cls)
    BaseException.__init__(exc, *[decode(a) for a in error.get("args", [])])
    for key, val in error.get("attrs", {}).items():
        try:
            setattr(exc, key, decode(val))
        except (AttributeError, TypeError):
            pass
    if not exc.args and error.get("message"):
        BaseException.__init__(exc, error["message"])
    return exc


def _encode_or_repr(value: Any) -> Any:
    """An exception's argument or attribute; its repr when it cannot travel as itself."""
    try:
        return encode(value)
    except TypeError:
        return repr(value)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _class(name: str) -> Any:
    module_name, _, qualname = name.partition(":")
    if module_name == "builtins":
        return getattr(builtins, qualname)
    if not module_name.startswith(_SAFE_PREFIXES) and module_name not in ("skystate", "click"):
        raise ImportError(f"refusing to import {module_name!r} from a request result")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def decode_args(args: dict[str, Any]) -> dict[str, Any]:
    """A request's keyword arguments, each encoded on its own by the client."""
    return {key: decode(value) for key, value in (args or {}).items()}
