"""The registry in Redis: one hash per kind (regions, people, groups, devices), a version that
every change moves, and a stream of who changed what, all under one hash tag so a change is one
transaction.

Workers and the API hold the registry in memory (``Registry``: indexed for targeting, so an
alert to 100,000 people never reads them key by key) and reload it when the version moves
(``LiveRegistry``). ``SHAOZI_REGISTRY`` seeds an empty store; after that, imports and the API
change it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable, Iterable, Mapping

from pydantic import BaseModel, SecretStr
from redis.asyncio import Redis
from redis.exceptions import WatchError

from contacts.registry import Device, Group, Person, RegionRecord, Registry

class Conflict(RuntimeError):
    """The registry moved on between checking a change and writing it."""


KINDS: dict[str, type[BaseModel]] = {"regions": RegionRecord, "people": Person, "groups": Group, "devices": Device}
TRUSTED = {"trusted": True}  # read back from the store: checked when written


def key_of(record: BaseModel) -> str:
    return record.code if isinstance(record, RegionRecord) else record.id  # type: ignore[attr-defined]


def plain(record: BaseModel) -> dict:
    """A record's fields with its secrets in clear (the workers sign with them; an admin exports them)."""
    return {k: (v.get_secret_value() if isinstance(v, SecretStr) else v) for k, v in record.model_dump().items()}


def stored(record: BaseModel) -> str:
    """A record as the store keeps it: JSON, secrets in clear, without the fields it leaves unset."""
    return json.dumps({k: v for k, v in plain(record).items() if v is not None}, ensure_ascii=False,
                      separators=(",", ":"))


class RegistryStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.base = f"{prefix}:{{registry}}"

    def key(self, kind: str) -> str:
        return f"{self.base}:{kind}"

    @property
    def version_key(self) -> str:
        return f"{self.base}:version"

    @property
    def changes_key(self) -> str:
        """stream: one entry per change: by, note, and how many records of each kind were written"""
        return f"{self.base}:changes"

    async def version(self) -> int:
        return int(await self.redis.get(self.version_key) or 0)

    async def load(self) -> tuple[Registry, int] | None:
        """The registry and its version, or None when nothing was ever stored."""
        async with self.redis.pipeline(transaction=True) as tx:
            tx.get(self.version_key)
            for kind in KINDS:
                tx.hvals(self.key(kind))
            version, *raws = await tx.execute()
        if version is None:
            return None
        # A large registry takes a second or two to build: in a thread, so the event loop (and
        # with it a worker's sending) goes on meanwhile.
        return await asyncio.to_thread(_build, raws), int(version)

    async def write(self, upserts: Mapping[str, Iterable[BaseModel]], removals: Mapping[str, Iterable[str]],
                    *, by: str, note: str, expect: int | None = None) -> int:
        """Write records and remove others in one transaction; returns the new version. With
        ``expect``, only if the version is still that (else ``Conflict``): the change was
        checked against that registry."""
        counts: dict[str, int] = {}
        async with self.redis.pipeline(transaction=True) as tx:
            if expect is not None:
                await tx.watch(self.version_key)
                if int(await tx.get(self.version_key) or 0) != expect:
                    raise Conflict("the registry changed meanwhile: check the change again")
                tx.multi()
            for kind, records in upserts.items():
                mapping = {key_of(r): stored(r) for r in records}
                counts[f"{kind}_written"] = len(mapping)
                items = list(mapping.items())
                for i in range(0, len(items), 1000):
                    tx.hset(self.key(kind), mapping=dict(items[i:i + 1000]))
            for kind, ids in removals.items():
                ids = list(ids)
                counts[f"{kind}_removed"] = len(ids)
                for i in range(0, len(ids), 1000):
                    tx.hdel(self.key(kind), *ids[i:i + 1000])
            tx.incr(self.version_key)
            tx.xadd(self.changes_key, {"by": by, "note": note, "at": f"{time.time():.3f}", **counts},
                    maxlen=10_000, approximate=True)
            try:
                results = await tx.execute()
            except WatchError as exc:
                raise Conflict("the registry changed meanwhile: check the change again") from exc
        return int(results[-2])

    async def replace(self, registry: Registry, *, by: str, note: str) -> int:
        """Make the store hold exactly this registry."""
        records = registry.records()
        removals = {}
        for kind, items in records.items():
            keep = {key_of(r) for r in items}
            removals[kind] = [k for k in (k.decode() if isinstance(k, bytes) else k
                                          for k in await self.redis.hkeys(self.key(kind))) if k not in keep]
        return await self.write(records, removals, by=by, note=note)

    async def changes(self, count: int = 50) -> list[dict]:
        """The latest changes, newest first."""
        entries = await self.redis.xrevrange(self.changes_key, count=count)
        return [{"id": _text(i), **{_text(k): _text(v) for k, v in fields.items()}} for i, fields in entries]


def _build(raws: list[list[bytes]]) -> Registry:
    parsed = {kind: [model.model_validate_json(raw, context=TRUSTED) for raw in values]
              for (kind, model), values in zip(KINDS.items(), raws)}
    registry = Registry.from_records(**parsed)
    gc.freeze()  # long-lived: kept out of the collector's full passes (see dispatcher.service)
    return registry


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LiveRegistry:
    """The registry as the store holds it now, reloaded when its version has moved (looked at,
    at most, every ``every_s``). Without a store it is a fixed registry."""

    def __init__(self, current: Registry, store: RegistryStore | None = None, version: int = 0,
                 every_s: float = 1.0) -> None:
        self.current = current
        self.store = store
        self.version = version
        self.every_s = every_s
        self._checked = time.monotonic()
        self._loading = asyncio.Lock()  # planners, escalation and the API share one

    @classmethod
    async def open(cls, store: RegistryStore, seed: Callable[[], Registry], *, note: str = "seeded") -> LiveRegistry:
        """The stored registry; an empty store is seeded with ``seed()`` first."""
        loaded = await store.load()
        if loaded is None:
            registry = seed()
            loaded = registry, await store.replace(registry, by="seed", note=note)
        return cls(loaded[0], store, loaded[1])

    async def refresh(self, *, now: bool = False) -> Registry:
        """The registry, reloaded first if its version has moved (``now``: look at once)."""
        if self.store is not None and (now or time.monotonic() - self._checked >= self.every_s):
            self._checked = time.monotonic()
            async with self._loading:
                if await self.store.version() != self.version:
                    loaded = await self.store.load()
                    if loaded is not None:
                        self.current, self.version = loaded
        return self.current
