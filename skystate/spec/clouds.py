"""Cloud markers for SkyPilot-style code: ``sky.Resources(cloud=sky.AWS())``.

``str(cloud)`` is the lower-case name that ``Resources.cloud`` stores.
"""

from __future__ import annotations


class Cloud:
    """A cloud or infra provider named in a Resources request."""

    _NAME = ""

    @classmethod
    def canonical_name(cls) -> str:
        return cls._NAME

    def __str__(self) -> str:
        return self._NAME

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Cloud):
            return self._NAME == other._NAME
        if isinstance(other, str):
            return other.lower() == self._NAME
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._NAME)


class AWS(Cloud):
    _NAME = "aws"


class GCP(Cloud):
    _NAME = "gcp"


class Local(Cloud):
    """skystate's local provider (processes on this machine)."""

    _NAME = "local"


class SSH(Cloud):
    """Existing hosts reached over SSH (``infra: ssh/<pool>``)."""

    _NAME = "ssh"


class Kubernetes(Cloud):
    _NAME = "kubernetes"


__all__ = ["AWS", "GCP", "SSH", "Cloud", "Kubernetes", "Local"]
