"""JSON-schema value types of the ``service:`` section (as SkyPilot's schema checks them).

pydantic's lax mode would take ``'30'`` for a number and ``"yes"`` for a bool; SkyPilot's
jsonschema refuses both, so these types check like it does (an integral float is an
integer, a bool is never a number).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = ["Boolean", "Count", "Integer", "Number", "Port", "Section", "Strict", "String", "short"]


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _integer(value: Any) -> Any:
    """JSON-schema ``integer``: an int (or an integral float), never a bool or a string."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be an integer, got {short(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"must be an integer, got {short(value)}")
        return int(value)
    return value


def _int_port(value: Any) -> Any:
    """SkyPilot asserts ``isinstance(ports, int)``: 8080.0 is refused, unlike other counts."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer port, got {short(value)}")
    return value


def _number(value: Any) -> Any:
    """JSON-schema ``number``: an int or a float, never a bool or a string."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {short(value)}")
    return value


def _boolean(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {short(value)}")
    return value


def _string(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {short(value)}")
    return value


Integer = Annotated[int, BeforeValidator(_integer)]
Count = Annotated[int, BeforeValidator(_integer), Field(ge=0)]
Number = Annotated[int | float, BeforeValidator(_number)]
Boolean = Annotated[bool, BeforeValidator(_boolean)]
String = Annotated[str, BeforeValidator(_string)]
Port = Annotated[int, BeforeValidator(_int_port)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Section(Strict):
    """A nested mapping: SkyPilot's schema refuses a null value anywhere inside one."""

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, value: Any) -> Any:
        if isinstance(value, dict):
            nulls = [str(k) for k, v in value.items() if v is None]
            if nulls:
                raise ValueError(f"{', '.join(nulls)}: a value is required here (not null)")
        return value
