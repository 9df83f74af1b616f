"""``service.pool``: SkyPilot's worker pools, checked as SkyPilot 0.14.1 checks them.

skystate does not run pools; a task YAML that has one still loads (or fails) as it does
in SkyPilot.
"""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from skystate.spec.service_types import Count, Integer, Number, Section

__all__ = ["PoolConfig"]


class PoolConfig(Section):
    """``pool`` (a SkyPilot worker pool, validated as SkyPilot does; not served)."""

    workers: Count | None = None
    min_workers: Count | None = None
    queue_length_threshold: Integer | None = Field(default=None, ge=1)
    max_workers: Count | None = Field(default=None, validate_default=True)
    upscale_delay_seconds: Number | None = Field(default=None, ge=0, validate_default=True)
    downscale_delay_seconds: Number | None = Field(default=None, ge=0, validate_default=True)

    @field_validator("max_workers")
    @classmethod
    def _bounds(cls, value: int | None, info: ValidationInfo) -> int | None:
        data = info.data
        if value is None:
            if data.get("min_workers") is not None:
                raise ValueError("min_workers needs max_workers")
            if data.get("queue_length_threshold") is not None:
                raise ValueError("queue_length_threshold needs max_workers")
            if data.get("workers") is None and data.get("min_workers") is None:
                raise ValueError("a pool needs workers, or min_workers and max_workers")
            return value
        low = data.get("min_workers")
        if low is None:
            low = data.get("workers")
        if low is not None and low > value:
            raise ValueError(f"max_workers ({value}) must be at least the workers ({low})")
        return value

    @field_validator("upscale_delay_seconds", "downscale_delay_seconds")
    @classmethod
    def _delays(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("max_workers") is None:
            raise ValueError(f"{info.field_name} needs max_workers (pool autoscaling)")
        return value
