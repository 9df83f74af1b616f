"""Return values and exceptions across the process boundary, as JSON.

``sky.get`` must return the seed's values (tuples, ``JobStatus``, ``ResourceHandle``,
dicts keyed by job id) and raise the original exception type with its attributes
(``failover_history`` is a list of exceptions), so plain ``json.dumps`` is not enough.

Both sides of the wire are untrusted by the other: the server decodes what clients send
and the client decodes what a (possibly remote) server answers. So a tagged object may
only name a class of the explicit allow-list below (skystate's enums, exceptions, models
and handles, and a few plain builtin exceptions); the name is checked as a string before
anything is imported, no constructor but the allowed class's runs, and anything else is
a ``CodecError`` (the server answers 422; the client raises it). An exception of a type
outside the list arrives as its nearest allowed base class (``ValueError`` for a pydantic
``ValidationError``), or ``RuntimeError``, with the original type named in its message.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import traceback
from typing import Any

#: Every class a tagged value may name, as ``module:qualname``.
ALLOWED_TYPES: frozenset[str] = frozenset({
    "skystate.enums:ClusterStatus", "skystate.enums:JobStatus",
    "skystate.enums:StatusRefreshMode", "skystate.enums:OptimizeTarget",
    "skystate.exceptions:JobExitCode", "skystate.exceptions:SpecIssue",
    "skystate.server.records:RequestStatus",
    "skystate.providers.base:NodeState", "skystate.providers.base:Offer",
    "skystate.providers.base:NodeInfo", "skystate.providers.base:ClusterObservation",
    "skystate.providers.check:ProviderCheck",
    "skystate.providers.catalog:AcceleratorOffering",
    "skystate.runtime.resources:Demand", "skystate.runtime.layout:NodeConfig",
    "skystate.reconcile.handles:ResourceHandle",
    "skystate.reconcile.plan:ActionType", "skystate.reconcile.plan:FieldChange",
    "skystate.reconcile.plan:Action", "skystate.reconcile.plan:Plan",
    "skystate.reconcile.refresh:RefreshClass", "skystate.reconcile.refresh:ClusterRefresh",
    "skystate.reconcile.refresh:RefreshReport",
    "skystate.reconcile.health:SyncStatus", "skystate.reconcile.health:HealthStatus",
    # managed jobs
    "skystate.jobs.status:ManagedJobStatus", "skystate.jobs.status:ControllerHandle",
    # services
    "skystate.serve.status:ServiceStatus", "skystate.serve.status:ReplicaStatus",
    "skystate.serve.status:ServiceComponent", "skystate.serve.status:UpdateMode",
})

#: Builtin exceptions a request may raise, by name; built without running any constructor.
#: The classes themselves are listed, so no name is ever looked up in ``builtins``.
ALLOWED_BUILTIN_ERRORS: dict[str, type[BaseException]] = {cls.__name__: cls for cls in (
    Exception, ValueError, TypeError, KeyError, IndexError, LookupError, RuntimeError,
    NotImplementedError, TimeoutError, OSError, FileNotFoundError, FileExistsError,
    PermissionError, IsADirectoryError, NotADirectoryError, ConnectionError,
    ConnectionRefusedError, BrokenPipeError, InterruptedError, AssertionError,
    AttributeError, ArithmeticError, ZeroDivisionError,
)}

#: skystate's own exceptions: every SkyStateError subclass of this module is allowed.
_EXCEPTIONS_MODULE = "skystate.exceptions"
MAX_DEPTH = 64
_TAGS = ("__map__", "__items__", "__tuple__", "__enum__", "__exc__", "__dc__", "__obj__",
         "__model__")


class CodecError(ValueError):
    """A value that may not cross the wire: a class off the allow-list, or a malformed tag."""


# --- encoding ---------------------------------------------------------------------------


def encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)) and not isinstance(
            value, enum.Enum):
        return value
    if isinstance(value, enum.Enum):
        return {"__enum__": _allowed_name(type(value)), "value": value.value}
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
        return {"__dc__": _allowed_name(type(value)), "fields": fields}
    if hasattr(value, "to_dict"):
        return {"__obj__": _allowed_name(type(value)), "data": encode(value.to_dict())}
    if hasattr(value, "model_dump"):
        return {"__model__": _allowed_name(type(value)),
                "data": value.model_dump(mode="json")}
    raise TypeError(f"cannot send a {type(value).__name__} as a request value")


def encode_error(exc: BaseException, *, with_traceback: bool = True) -> dict[str, Any]:
    error = {
        "type": _qualname(type(exc)),
        "bases": [_qualname(c) for c in type(exc).__mro__[1:] if issubclass(c, BaseException)],
        "message": str(exc),
        "args": [_encode_or_repr(a) for a in exc.args],
        "attrs": {key: _encode_or_repr(val) for key, val in vars(exc).items()
                  if _plain_attr(key)},
    }
    if with_traceback:
        error["traceback"] = "".join(traceback.format_exception(exc))
    return error


def _allowed_name(cls: type) -> str:
    name = _qualname(cls)
    if not _is_allowed(name):
        raise TypeError(f"cannot send a {cls.__name__}: {name} is not on the codec's "
                        "allow-list (skystate/server/codec.py)")
    return name


def _encode_or_repr(value: Any) -> Any:
    """An exception's argument or attribute; its repr when it cannot travel as itself."""
    try:
        return encode(value)
    except TypeError:
        return repr(value)


# --- decoding ---------------------------------------------------------------------------


def decode(value: Any, *, exceptions: bool = True) -> Any:
    """A value built only from JSON and allow-listed classes; CodecError otherwise.
    ``exceptions=False`` (request arguments) refuses exception values too."""
    try:
        return _Decoder(exceptions)(value, 0)
    except CodecError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        raise CodecError(f"malformed value: {type(exc).__name__}: {exc}") from None


def decode_args(args: Any) -> dict[str, Any]:
    """A request's keyword arguments, each encoded on its own by the client."""
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise CodecError("a request's args must be a JSON object")
    return {key: decode(value, exceptions=False) for key, value in args.items()}


def decode_error(error: Any) -> BaseException:
    """The original exception type with its attributes, if allowed; else its nearest allowed
    base (RuntimeError at worst) with the original type named in the message."""
    if not isinstance(error, dict):
        return RuntimeError(f"malformed error from the peer: {error!r:.200}")
    try:
        return _Decoder(True).error(error, 0)
    except (CodecError, TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        return RuntimeError(f"{error.get('type')}: {error.get('message')} "
                            f"(undecodable: {exc})")


class _Decoder:
    """One decoding pass; ``exceptions`` says whether exception values are accepted."""

    def __init__(self, exceptions: bool) -> None:
        self.exceptions = exceptions

    def __call__(self, value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise CodecError(f"value nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, list):
            return [self(v, depth + 1) for v in value]
        if not isinstance(value, dict):
            return value
        tag = next((t for t in _TAGS if t in value), None)
        if tag is None:
            return {k: self(v, depth + 1) for k, v in value.items()}  # a plain dict
        body = value[tag]
        if tag == "__map__":
            return {_str(k): self(v, depth + 1) for k, v in _dict(body).items()}
        if tag == "__items__":
            return {_hashable(self(k, depth + 1)): self(v, depth + 1)
                    for k, v in (_pair(item) for item in _list(body))}
        if tag == "__tuple__":
            return tuple(self(v, depth + 1) for v in _list(body))
        if tag == "__exc__":
            if not self.exceptions:
                raise CodecError("an exception cannot be a request argument")
            return self.error(_dict(body), depth + 1)
        cls = allowed_class(_str(body))
        if tag == "__enum__":
            if not issubclass(cls, enum.Enum):
                raise CodecError(f"{body} is not an enum")
            return cls(value.get("value"))
        if tag == "__dc__":
            if not dataclasses.is_dataclass(cls):
                raise CodecError(f"{body} is not a dataclass")
            fields = _dict(value.get("fields"))
            return cls(**{_str(k): self(v, depth + 1) for k, v in fields.items()})
        if tag == "__obj__":
            data = self(value.get("data"), depth + 1)
            if hasattr(cls, "from_dict"):
                return cls.from_dict(data)
            return cls(**{_str(k): v for k, v in _dict(data).items()})
        if not hasattr(cls, "model_validate"):
            raise CodecError(f"{body} is not a model")
        return cls.model_validate(value.get("data"))

    def error(self, error: dict[str, Any], depth: int) -> BaseException:
        cls = _error_class(error)
        args = [self(a, depth + 1) for a in _list(error.get("args", []))]
        exc = cls.__new__(cls)
        BaseException.__init__(exc, *args)
        if _qualname(cls) != error.get("type"):  # a foreign type, as its allowed base
            BaseException.__init__(exc, f"{error.get('type')}: {error.get('message')}")
            return exc
        for key, val in _dict(error.get("attrs", {})).items():
            if not _plain_attr(key):
                continue
            try:
                setattr(exc, key, self(val, depth + 1))
            except (AttributeError, TypeError):
                pass
        if not exc.args and error.get("message"):
            BaseException.__init__(exc, str(error["message"]))
        return exc


def _error_class(error: dict[str, Any]) -> type[BaseException]:
    """The error's own class if allowed, else its first allowed base, else RuntimeError."""
    names = [error.get("type"), *(_list(error.get("bases", [])))]
    for name in names:
        if isinstance(name, str) and _is_allowed(name):
            cls = allowed_class(name)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                return cls
    return RuntimeError


def _is_allowed(name: str) -> bool:
    module, _, qualname = name.partition(":")
    if module == "builtins":
        return qualname in ALLOWED_BUILTIN_ERRORS
    if module == _EXCEPTIONS_MODULE:
        return qualname.isidentifier()  # checked to be a SkyStateError in allowed_class
    return name in ALLOWED_TYPES


def allowed_class(name: str) -> Any:
    """The class an allow-listed ``module:qualname`` names; CodecError for any other name.

    The check is on the string, before any import, so a hostile name imports nothing."""
    if not _is_allowed(name):
        raise CodecError(f"{name!r} is not a type skystate accepts over the wire")
    module_name, _, qualname = name.partition(":")
    if module_name == "builtins":
        return ALLOWED_BUILTIN_ERRORS[qualname]
    module = importlib.import_module(module_name)
    cls = getattr(module, qualname, None)
    if module_name == _EXCEPTIONS_MODULE:
        from skystate.exceptions import SkyStateError

        ok = isinstance(cls, type) and (issubclass(cls, SkyStateError)
                                        or _qualname(cls) in ALLOWED_TYPES)
        if not ok:
            raise CodecError(f"{name!r} is not a type skystate accepts over the wire")
    if not isinstance(cls, type):
        raise CodecError(f"{name!r} is not a class")
    return cls


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _plain_attr(key: Any) -> bool:
    return isinstance(key, str) and key.isidentifier() and not key.startswith("_")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise CodecError(f"expected a string, got {type(value).__name__}")
    return value


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CodecError(f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise CodecError(f"expected a list, got {type(value).__name__}")
    return value


def _pair(item: Any) -> tuple[Any, Any]:
    if not isinstance(item, list) or len(item) != 2:
        raise CodecError("an __items__ entry must be a [key, value] pair")
    return item[0], item[1]


def _hashable(key: Any) -> Any:
    try:
        hash(key)
    except TypeError:
        raise CodecError(f"a {type(key).__name__} cannot be a mapping key") from None
    return key
