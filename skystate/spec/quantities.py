"""Values of a ``resources`` block as SkyPilot 0.14 reads them.

``cpus: 8`` → ``"8"``, ``memory: 16GB`` → ``"16.0"`` (GiB), ``disk_size: 1TB`` → ``1024``,
``ports: [8080, 8081]`` → ``["8080-8081"]``, ``accelerators: A100:8`` → ``{"A100": 8}``:
the form SkyPilot's ``Resources`` gives back, so a YAML reads the same in both. Errors
are one sentence without the field name (the caller names the field).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from skystate.spec import limits

_PORT = re.compile(r"^(\d+)(-(\d+))?$")
_ACCEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
TIME_PATTERN = re.compile(r"^(\d+)\s*([smhdw]?)$", re.IGNORECASE)
_TIME_MINUTES = {"": 1, "m": 1, "s": 1 / 60, "h": 60, "d": 1440, "w": 10080}
# SkyPilot's size units (binary), in GiB; a bare number is GiB.
SIZE_UNITS_GB = {
    "kb": 1 / 1024**2, "ki": 1 / 1024**2, "mb": 1 / 1024, "mi": 1 / 1024, "gb": 1.0,
    "gi": 1.0, "tb": 1024.0, "ti": 1024.0, "pb": 1024.0**2, "pi": 1024.0**2,
}
_SIZE_TEXT = re.compile(r"^[0-9]+(" + "|".join(SIZE_UNITS_GB) + r")?$", re.IGNORECASE)
_QUANTITY_MAX = {"cpus": (limits.MAX_CPUS, ""), "memory": (limits.MAX_MEMORY_GB, " GB")}


def parse_minutes(value: str) -> int:
    """SkyPilot's autostop time: ``30`` / ``"30m"`` / ``"2h"`` / ``"1d"`` → minutes."""
    match = TIME_PATTERN.match(value.strip())
    if not match:
        raise ValueError(f"invalid time {value!r}: use minutes or a unit like '30m', '2h', '1d'")
    return max(0, round(int(match.group(1)) * _TIME_MINUTES[match.group(2).lower()]))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _in_gb(text: str, integral: bool) -> str | None:
    """``"16GB"`` → ``"16.0"`` (``"16"`` when ``integral``); None if not a size."""
    lowered = text.lower()
    for unit, gb in SIZE_UNITS_GB.items():
        if lowered.endswith(unit):
            amount = _number(lowered[: -len(unit)])
            if amount is None or (integral and not amount.is_integer()):
                continue
            size = amount * gb
            if integral:
                return str(int(size)) if size.is_integer() else None
            return str(size)
    return None


def parse_quantity(value: Any, field: str) -> str | None:
    """``cpus``/``memory``: ``8`` / ``"8"`` / ``"8+"`` (and ``memory: 16GB``) → SkyPilot's string.

    The text is kept as written (``2.0`` stays ``"2.0"``), a size with a unit becomes GiB.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"must be a number or a string like '8' or '8+', got {value!r}")
    text = str(value)
    body, plus = (text[:-1], "+") if text.endswith("+") else (text, "")
    number = _number(body)
    if number is None and field == "memory":
        converted = _in_gb(body, integral=False)
        if converted is not None:
            body, number = converted, float(converted)
    if number is None or number != number:
        units = " or a size like '16GB'" if field == "memory" else ""
        raise ValueError(f"must be a number or a string like '8' or '8+'{units}, got {value!r}")
    if number <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    top, unit = _QUANTITY_MAX[field] if field in _QUANTITY_MAX else (None, "")
    if top is not None and number > top:
        raise ValueError(f"must be at most {top:,}{unit} per node, got {value!r}")
    return body + plus


def quantity_bounds(value: str | None) -> tuple[float, bool]:
    """(amount, at_least) of a canonical quantity; (0, True) when unset."""
    if value is None:
        return 0.0, True
    return float(value.rstrip("+")), value.endswith("+")


def parse_disk_size(value: Any) -> Any:
    """``256`` / ``"256"`` / ``"256GB"`` / ``"1TB"`` → GiB as an int (whole GiB only)."""
    if value is None:
        return value
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number of GB like 256 or a size like '1TB', "
                         f"got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        converted = _in_gb(value, integral=True) if _SIZE_TEXT.match(value) else None
        if converted is None and value.isdigit():
            converted = value
        if converted is None:
            raise ValueError(f"must be a whole number of GB like 256 or a size like '1TB', "
                             f"got {value!r}")
        return int(converted)
    if not isinstance(value, int):
        raise ValueError(f"must be a whole number of GB like 256 or a size like '1TB', "
                         f"got {value!r}")
    return value


def check_size_text(value: Any) -> Any:
    """A size written as SkyPilot's schema allows it: an integer or ``"<n>[unit]"``."""
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, str) and _SIZE_TEXT.match(value))
    ):
        raise ValueError(f"must be a whole number of GB or a size like '100GB', got {value!r}")
    return value


def parse_accelerators(value: Any) -> dict[str, int | float] | None:
    """``"A100"``, ``"A100:8"``, ``{"A100": 8}`` or ``{"A100:8": null}`` → ``{"A100": 8}``."""
    if value is None:
        return None
    if isinstance(value, dict) and len(value) == 1:
        ((key, count),) = value.items()
        if count is None:
            value = str(key)
    if isinstance(value, str):
        name, sep, count_text = value.partition(":")
        count: Any = 1
        if sep:
            number = _number(count_text) if ":" not in count_text else None
            if number is None:
                raise ValueError(f"must look like 'A100' or 'A100:8', got {value!r}")
            count = int(number) if number.is_integer() else number
        value = {name: count}
    if not isinstance(value, dict):
        raise ValueError(f"must be a string like 'A100:8' or a mapping, got {value!r}")
    if len(value) != 1:
        raise ValueError(f"must name exactly one accelerator type, got {value!r}")
    ((name, count),) = value.items()
    if not isinstance(name, str) or not _ACCEL_NAME.match(name):
        raise ValueError(f"invalid accelerator name {name!r}")
    if isinstance(count, bool) or not isinstance(count, (int, float)):
        raise ValueError(f"count of {name} must be a number, got {count!r}")
    if count <= 0 or count != count:
        raise ValueError(f"count of {name} must be positive, got {count!r}")
    if count > limits.MAX_ACCELERATORS:
        raise ValueError(f"count of {name} must be at most {limits.MAX_ACCELERATORS} per node, "
                         f"got {count:g}")
    return {name: int(count) if float(count).is_integer() else float(count)}


def parse_ports(value: Any) -> list[str] | None:
    """``8080`` / ``"8000-8010"`` / ``"80,443"`` / a list → merged ranges, as SkyPilot."""
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    tokens: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ValueError(f"invalid port {item!r} (use 8080 or '8000-8010')")
        tokens += [t.strip() for t in str(item).split(",") if t.strip()]
    if len(tokens) > limits.MAX_PORT_ENTRIES:
        raise ValueError(f"at most {limits.MAX_PORT_ENTRIES} ports or ranges (use ranges like "
                         f"'8000-8100'), got {len(tokens)}")
    ports: set[int] = set()
    for text in tokens:
        match = _PORT.match(text)
        if not match:
            raise ValueError(f"invalid port or range {text!r} (use 8080 or '8000-8010')")
        low = int(match.group(1))
        high = int(match.group(3) or low)
        if not (1 <= low <= high <= 65535):
            raise ValueError(f"{text!r} is out of range 1-65535")
        ports.update(range(low, high + 1))
    ranges = []
    for _, group in itertools.groupby(enumerate(sorted(ports)), lambda x: x[1] - x[0]):
        run = [port for _, port in group]
        ranges.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ranges or None
