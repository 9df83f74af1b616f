"""SkyPilot's ``sky.Storage``: a bucket whose contents are put on every node of a task.

A storage mount is a ``file_mounts`` entry whose value is a mapping (``{name:, source:,
store:, persistent:, mode:}``), or an entry of ``Task.set_storage_mounts``. The rules on
``name`` and ``source`` are SkyPilot's:

- a local ``source`` (a folder or file, or a list of them) needs a ``name``: the bucket
  it is uploaded to (created if missing);
- a bucket URI ``source`` (``s3://bucket/prefix``) must not have a ``name``;
- a ``name`` alone names a bucket that must already exist.

One difference, on purpose: SkyPilot's default ``mode`` is ``MOUNT`` (a FUSE mount of
the bucket). skystate's nodes have no FUSE mounter, so an unset ``mode`` means ``COPY``
(the contents are copied to the nodes before setup) and an explicit ``MOUNT`` or
``MOUNT_CACHED`` is refused before anything is provisioned (see ``reconcile.storage_mounts``).
"""

from __future__ import annotations

import enum
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from skystate.spec.mounts import is_local_source

__all__ = [
    "BUCKET_SCHEMES", "Storage", "StorageMode", "StorageSpec", "StoreType", "split_bucket_uri",
]


class StorageMode(enum.Enum):
    MOUNT = "MOUNT"
    COPY = "COPY"
    MOUNT_CACHED = "MOUNT_CACHED"


class StoreType(enum.Enum):
    S3 = "S3"
    GCS = "GCS"
    AZURE = "AZURE"
    R2 = "R2"
    IBM = "IBM"
    OCI = "OCI"
    NEBIUS = "NEBIUS"
    COREWEAVE = "COREWEAVE"
    VASTDATA = "VASTDATA"
    HF = "HF"
    VOLUME = "VOLUME"


# URI scheme of a bucket → its store.
BUCKET_SCHEMES = {"s3": StoreType.S3, "gs": StoreType.GCS, "r2": StoreType.R2,
                  "cos": StoreType.IBM, "oci": StoreType.OCI, "nebius": StoreType.NEBIUS,
                  "cw": StoreType.COREWEAVE, "vastdata": StoreType.VASTDATA,
                  "hf": StoreType.HF}
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://([^/]*)/?(.*)$")
# S3's rules (GCS's are close): 3-63 of a-z 0-9 . -, starting and ending alphanumeric.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def split_bucket_uri(uri: str) -> tuple[str, str, str]:
    """``s3://bucket/some/prefix`` → ``("s3", "bucket", "some/prefix")``."""
    match = _URI.match(uri)
    if not match or not match.group(2):
        raise ValueError(f"{uri!r} is not a bucket URI (scheme://bucket/path)")
    return match.group(1).lower(), match.group(2), match.group(3).strip("/")


def check_bucket_name(name: str) -> str:
    if not _BUCKET.match(name) or ".." in name:
        raise ValueError(
            f"invalid bucket name {name!r}: use 3-63 lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit")
    return name


class StorageSpec(BaseModel):
    """A storage mount as written in a task (SkyPilot's storage schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              defer_build=True)

    name: str | None = None
    source: str | list[str] | None = None
    store: StoreType | None = None
    persistent: bool = True
    mode: StorageMode | None = None  # unset means COPY here (module doc)
    type: str | None = None
    config: dict[str, Any] | None = None
    force_delete: bool | None = Field(default=None, alias="_force_delete")
    is_sky_managed: bool | None = Field(default=None, alias="_is_sky_managed")
    bucket_sub_path: str | None = Field(default=None, alias="_bucket_sub_path")

    @field_validator("store", "mode", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return check_bucket_name(value) if value is not None else None

    @field_validator("source")
    @classmethod
    def _source(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("a source list must not be empty")
            if not all(is_local_source(v) for v in value):
                raise ValueError("a source list holds local paths only (no bucket URIs)")
        elif isinstance(value, str) and not is_local_source(value):
            split_bucket_uri(value)
        elif isinstance(value, str) and not value:
            raise ValueError("source must not be empty")
        return value

    @model_validator(mode="after")
    def _name_and_source(self) -> StorageSpec:
        local = self.source is not None and not self.is_bucket_uri
        if self.name is None and self.source is None:
            raise ValueError("a storage mount needs a name (a bucket) or a source")
        if self.name is None and local:
            raise ValueError("a local source needs a name: the bucket it is uploaded to")
        if self.name is not None and self.is_bucket_uri:
            raise ValueError("give either name or a bucket URI source, not both "
                             "(the bucket is the URI's)")
        if self.is_bucket_uri and self.store is not None:
            scheme = split_bucket_uri(str(self.source))[0]
            if BUCKET_SCHEMES.get(scheme) not in (None, self.store):
                raise ValueError(f"store {self.store.value} does not match source {self.source}")
        return self

    @property
    def is_bucket_uri(self) -> bool:
        return isinstance(self.source, str) and not is_local_source(self.source)

    @property
    def effective_mode(self) -> StorageMode:
        return self.mode or StorageMode.COPY

    def bucket(self) -> tuple[StoreType | None, str, str]:
        """(store, bucket, prefix): the store is None for a scheme skystate does not know."""
        if self.is_bucket_uri:
            scheme, bucket, prefix = split_bucket_uri(str(self.source))
            return BUCKET_SCHEMES.get(scheme), bucket, prefix
        return self.store or StoreType.S3, str(self.name), (self.bucket_sub_path or "").strip("/")

    def to_config(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Storage:
    """SkyPilot's ``sky.Storage`` (the constructor's names; validated at once)."""

    def __init__(
        self,
        name: str | None = None,
        source: str | list[str] | None = None,
        stores: list[StoreType] | None = None,
        persistent: bool | None = True,
        mode: StorageMode | None = None,
        sync_on_reconstruction: bool = True,
        _is_sky_managed: bool | None = None,
        _bucket_sub_path: str | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.stores: dict[StoreType, None] = dict.fromkeys(stores or [])
        self.persistent = True if persistent is None else persistent
        self.mode = mode
        self.sync_on_reconstruction = sync_on_reconstruction
        self._is_sky_managed = _is_sky_managed
        self._bucket_sub_path = _bucket_sub_path
        self._extra: dict[str, Any] = {}  # YAML fields kept as written (type, config, ...)
        self.spec()  # raises ValueError for a bad combination

    def add_store(self, store_type: StoreType | str, region: str | None = None) -> None:
        kind = store_type if isinstance(store_type, StoreType) else StoreType(store_type.upper())
        self.stores[kind] = None
        self.spec()

    def spec(self) -> StorageSpec:
        if len(self.stores) > 1:
            raise ValueError("a Storage is backed by one store here; got "
                             + ", ".join(s.value for s in self.stores))
        try:
            return StorageSpec.model_validate(self.to_yaml_config())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"invalid Storage: {where + ': ' if where else ''}"
                             f"{first['msg'].removeprefix('Value error, ')}") from None

    def to_yaml_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for key, value in (
            ("name", self.name), ("source", self.source),
            ("store", next(iter(self.stores)).value if self.stores else None),
            ("persistent", self.persistent),
            ("mode", self.mode.value if isinstance(self.mode, StorageMode) else self.mode),
            ("_is_sky_managed", self._is_sky_managed),
            ("_bucket_sub_path", self._bucket_sub_path),
        ):
            if value is not None:
                config[key] = value
        return {**config, **self._extra}

    @classmethod
    def from_yaml_config(cls, config: dict[str, Any] | StorageSpec) -> Storage:
        spec = config if isinstance(config, StorageSpec) else StorageSpec.model_validate(config)
        storage = cls(name=spec.name, source=spec.source,
                      stores=[spec.store] if spec.store else None, persistent=spec.persistent,
                      mode=spec.mode, _is_sky_managed=spec.is_sky_managed,
                      _bucket_sub_path=spec.bucket_sub_path)
        dumped = spec.to_config()
        storage._extra = {k: dumped[k] for k in ("type", "config", "_force_delete") if k in dumped}
        return storage

    def __repr__(self) -> str:
        return f"Storage({', '.join(f'{k}={v!r}' for k, v in self.to_yaml_config().items())})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Storage):
            return NotImplemented
        return self.to_yaml_config() == other.to_yaml_config()

    __hash__ = object.__hash__
