"""The registry: a regions tree and the people, chat groups and loudspeaker gateways in it,
held in memory and indexed for targeting (``contacts.store`` keeps it in Redis,
``contacts.imports`` reads and writes its files).

Targeting asks one question of it: whom does an alert reach? Everyone in the named regions and
their descendants and everyone located inside the alert's shapes (``contacts.targeting``), each
with the channels they can be reached on, in their order of preference.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Literal

import yaml
import phonenumbers
from pydantic import AfterValidator, BaseModel, Field, SecretStr, ValidationError, ValidationInfo, field_validator

from config.settings import PersonRole
from contacts.targeting import POLYGON, Located, Target

Level = Literal["district", "street", "community"]
GroupChannel = Literal["wecom", "dingtalk", "feishu"]
PersonChannel = Literal["sms", "voice", "telegram", "console"]  # the channels that reach one person
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: large registries load fast


def e164(phone: str) -> str:
    """A phone number in E.164 form (+8613800000000), or ValueError saying it is not valid."""
    try:
        number = phonenumbers.parse(phone, "CN")
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"phone {phone!r} is not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"phone {phone!r} is not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _cap_polygon(value: str | None) -> str | None:
    if value is not None and not re.match(POLYGON, value.strip()):
        raise ValueError(f"boundary {value[:40]!r} is not a CAP polygon (lat,lon pairs, the first repeated last)")
    return value.strip() if value else None


Boundary = Annotated[str | None, AfterValidator(_cap_polygon)]


class Region(BaseModel):
    code: str = Field(pattern=r"^\d{6,12}$")
    name: str = Field(min_length=1)
    level: Level
    lat: float | None = Field(None, ge=-90, le=90, description="centre point")
    lon: float | None = Field(None, ge=-180, le=180)
    boundary: Boundary = Field(None, description="CAP polygon: lat,lon pairs, the first repeated last")
    children: list[Region] = Field(default_factory=list)

    def walk(self) -> Iterator[Region]:
        yield self
        for child in self.children:
            yield from child.walk()


class RegionRecord(BaseModel):
    """A region as one flat record, naming its parent: how regions are stored and imported."""

    code: str = Field(pattern=r"^\d{6,12}$")
    name: str = Field(min_length=1)
    level: Level
    parent: str | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    boundary: Boundary = None


def flatten(roots: Iterable[Region]) -> list[RegionRecord]:
    out: list[RegionRecord] = []

    def visit(region: Region, parent: str | None) -> None:
        out.append(RegionRecord(code=region.code, name=region.name, level=region.level, parent=parent,
                                lat=region.lat, lon=region.lon, boundary=region.boundary))
        for child in region.children:
            visit(child, region.code)

    for root in roots:
        visit(root, None)
    return out


def nest(records: Iterable[RegionRecord]) -> list[Region]:
    """The tree of flat region records; a parent that is not among them is an error."""
    records = list(records)
    nodes = {r.code: Region(code=r.code, name=r.name, level=r.level, lat=r.lat, lon=r.lon, boundary=r.boundary)
             for r in records}
    roots = []
    for r in records:
        if r.parent is None:
            roots.append(nodes[r.code])
        elif r.parent in nodes and r.parent != r.code:
            nodes[r.parent].children.append(nodes[r.code])
        else:
            raise RegistryError(f"region {r.code}: parent {r.parent} is not a region")
    reachable = sum(1 for root in roots for _ in root.walk())
    if reachable != len(nodes):
        raise RegistryError("the regions' parents go round in a circle")
    return roots


class Recipient(BaseModel):
    """What people, chat groups and gateways have in common: an id (one namespace for all
    three), a name and the region they belong to."""

    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1)
    region: str


class Person(Recipient):
    role: PersonRole
    phone: str | None = None
    channels: list[PersonChannel] = Field(default_factory=lambda: ["sms"], description="in order of preference")
    telegram_chat_id: str | None = None
    hazards: list[str] = Field(default_factory=list)
    lat: float | None = Field(None, ge=-90, le=90, description="where they usually are (polygon alerts)")
    lon: float | None = Field(None, ge=-180, le=180)
    backup: str | None = Field(None, description="who is told when this person stays silent")
    supervisor: str | None = Field(None, description="who gets the list of silent people under them")

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A valid number, kept in E.164; a national number is read as Chinese. Records read back
        from the registry's own store were checked when written and are trusted."""
        if value is None or (info.context or {}).get("trusted"):
            return value
        return e164(value)

    def address(self, channel: str) -> str | None:
        """This person's address on a channel, or None when they have none there."""
        if channel in ("sms", "voice", "console"):
            return self.phone
        if channel == "telegram":
            return self.telegram_chat_id
        return None


class Group(Recipient):
    """A community's or street's chat group, reached through its app's group robot."""

    channel: GroupChannel
    webhook: str = Field(pattern=r"^https?://\S+$", repr=False,  # it holds the robot's key: kept out of logs
                         description="the robot's URL, with its key or token")
    secret: SecretStr | None = Field(None, description="the robot's signing secret (DingTalk, Feishu)")

    @property
    def channels(self) -> list[str]:
        return [self.channel]

    def address(self, channel: str) -> str | None:
        """A group's address is its id: its webhook, a secret, stays in the registry."""
        return self.id if channel == self.channel else None


class Device(Recipient):
    """A loudspeaker or emergency-broadcast gateway, reached over MQTT with commands signed with its key."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")  # it is a topic level
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    key: SecretStr = Field(description="HMAC-SHA256 key the gateway checks each command with")

    @property
    def channels(self) -> list[str]:
        return ["mqtt"]

    def address(self, channel: str) -> str | None:
        return self.id if channel == "mqtt" else None


class RegistryFile(BaseModel):
    regions: list[Region]
    people: list[Person] = Field(default_factory=list)
    groups: list[Group] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)


class RegistryError(ValueError):
    """A registry file that cannot be used; the message names the file and the problems."""


class Registry:
    """Regions and people held in memory, indexed for targeting.

    Loaded from a YAML file, or a JSON file of the same shape (``.json``).
    """

    def __init__(self, regions: list[Region], people: Iterable[Person], groups: Iterable[Group] = (),
                 devices: Iterable[Device] = ()) -> None:
        self.regions = regions
        self._region_by_code: dict[str, Region] = {}
        self._parent: dict[str, str | None] = {}
        for root in regions:
            self._index(root, None)
        self._people_by_region: dict[str, list[Person]] = {}
        self._person_by_id: dict[str, Person] = {}
        problems = []
        for person in people:
            if person.id in self._person_by_id:
                problems.append(f"person {person.id} appears twice")
            self._person_by_id[person.id] = person
            if person.region not in self._region_by_code:
                problems.append(f"person {person.id}: region {person.region} is not in the regions tree")
                continue
            self._people_by_region.setdefault(person.region, []).append(person)
        # Groups and devices are recipients too: their ids share one namespace with people's.
        self._groups_by_region: dict[str, list[Group]] = {}
        self._group_by_id: dict[str, Group] = {}
        self._devices_by_region: dict[str, list[Device]] = {}
        self._device_by_id: dict[str, Device] = {}
        for kind, items, by_id, by_region in (("group", groups, self._group_by_id, self._groups_by_region),
                                              ("device", devices, self._device_by_id, self._devices_by_region)):
            for item in items:
                if item.id in self._person_by_id or item.id in self._group_by_id or item.id in self._device_by_id:
                    problems.append(f"{kind} {item.id}: the id is taken")
                by_id[item.id] = item
                if item.region not in self._region_by_code:
                    problems.append(f"{kind} {item.id}: region {item.region} is not in the regions tree")
                    continue
                by_region.setdefault(item.region, []).append(item)
        for person in self._person_by_id.values():
            for field in ("backup", "supervisor"):
                other = getattr(person, field)
                if other is not None and (other == person.id or other not in self._person_by_id):
                    problems.append(f"person {person.id}: {field} {other} is not another person in the registry")
        if problems:
            raise RegistryError("; ".join(problems))

    def _index(self, region: Region, parent: str | None) -> None:
        if region.code in self._region_by_code:
            raise RegistryError(f"region code {region.code} appears twice")
        self._region_by_code[region.code] = region
        self._parent[region.code] = parent
        for child in region.children:
            self._index(child, region.code)

    @classmethod
    def load(cls, path: str | Path) -> Registry:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            # JSON (the same shape) loads a large registry in a fraction of YAML's time.
            data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=SafeLoader)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise RegistryError(f"{path}: {exc}") from exc
        try:
            parsed = RegistryFile.model_validate(data)
        except ValidationError as exc:
            lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            raise RegistryError(f"{path}: " + "; ".join(lines)) from exc
        try:
            return cls(parsed.regions, parsed.people, parsed.groups, parsed.devices)
        except RegistryError as exc:
            raise RegistryError(f"{path}: {exc}") from exc

    def person(self, person_id: str) -> Person | None:
        return self._person_by_id.get(person_id)

    def region(self, code: str) -> Region | None:
        return self._region_by_code.get(code)

    def street_and_community(self, code: str) -> tuple[str | None, str | None]:
        """The street and community a region code lies in (for grouping reports)."""
        street = community = None
        current: str | None = code
        while current is not None:
            level = self._region_by_code[current].level
            if level == "community":
                community = current
            elif level == "street":
                street = current
            current = self._parent[current]
        return street, community

    def group(self, group_id: str) -> Group | None:
        return self._group_by_id.get(group_id)

    def people_in(self, codes: Iterable[str]) -> list[Person]:
        """Everyone in the named regions and their descendants, each once, in registry order."""
        return _at(self._people_by_region, self.subtree(codes))

    def device(self, device_id: str) -> Device | None:
        return self._device_by_id.get(device_id)

    @property
    def devices(self) -> list[Device]:
        return list(self._device_by_id.values())

    def groups_in(self, codes: Iterable[str]) -> list[Group]:
        return _at(self._groups_by_region, self.subtree(codes))

    def regions_at(self, level: str) -> list[Region]:
        return [r for r in self._region_by_code.values() if r.level == level]

    def people_at(self, code: str) -> list[Person]:
        """The people registered at a region itself, not below it (a street office's staff)."""
        return list(self._people_by_region.get(code, ()))

    def devices_in(self, codes: Iterable[str]) -> list[Device]:
        return _at(self._devices_by_region, self.subtree(codes))

    def recipients_in(self, codes: Iterable[str]) -> list[Person | Group | Device]:
        """Everyone in the named regions and their descendants, then the regions' chat groups,
        then their loudspeaker gateways."""
        subtree = self.subtree(codes)  # walked once for all three
        return [*_at(self._people_by_region, subtree), *_at(self._groups_by_region, subtree),
                *_at(self._devices_by_region, subtree)]

    def reach(self, target: Target) -> list[Person | Group | Device]:
        """Who an alert reaches (see ``contacts.targeting``), each once, in a stable order: the
        regions' recipients, then those located inside its shapes."""
        found = self.recipients_in(target.codes)
        if target.has_shapes:
            seen = {r.id for r in found}
            located = self._located
            found += [item for item, inside in zip(located.items, located.inside(target))
                      if inside and item.id not in seen]
        if target.roles is None and not self._hazards_followed:
            return found  # nothing to filter: the common case, and a district's worth of calls saved
        return [r for r in found if _wanted(r, target)]

    @functools.cached_property
    def _hazards_followed(self) -> bool:
        """Whether anyone follows only particular hazards."""
        return any(p.hazards for p in self._person_by_id.values())

    def reaches_anyone(self, target: Target) -> bool:
        """Whether an alert reaches anyone at all: ``reach`` without building the whole list."""
        for code in self.subtree(target.codes):
            for kind in (self._people_by_region, self._groups_by_region, self._devices_by_region):
                if any(_wanted(r, target) for r in kind.get(code, ())):
                    return True
        if target.has_shapes:
            located = self._located
            return any(_wanted(item, target) for item, inside in zip(located.items, located.inside(target)) if inside)
        return False

    @functools.cached_property
    def _located(self) -> Located:
        return Located.of([*self._person_by_id.values(), *self._device_by_id.values()])

    def officer_phones(self, code: str) -> list[str]:
        """The phones of a region's own information officers (a group message mentions them)."""
        return [p.phone for p in self._people_by_region.get(code, ()) if p.role == "info_officer" and p.phone]

    def subtree(self, codes: Iterable[str]) -> list[str]:
        """The named regions and their descendants, each once, in tree order."""
        seen: dict[str, None] = {}
        for code in codes:
            root = self._region_by_code.get(code)
            if root is not None:
                for region in root.walk():
                    seen.setdefault(region.code)
        return list(seen)

    def unknown_codes(self, codes: Iterable[str]) -> list[str]:
        return [c for c in codes if c not in self._region_by_code]

    def records(self) -> dict[str, list[BaseModel]]:
        """Everything in it as flat records, by kind: how the registry is stored and exported."""
        return {"regions": flatten(self.regions), "people": list(self._person_by_id.values()),
                "groups": list(self._group_by_id.values()), "devices": list(self._device_by_id.values())}

    @classmethod
    def from_records(cls, regions: Iterable[RegionRecord], people: Iterable[Person] = (),
                     groups: Iterable[Group] = (), devices: Iterable[Device] = ()) -> Registry:
        return cls(nest(regions), people, groups, devices)

    def tree(self) -> list[dict]:
        return [r.model_dump() for r in self.regions]

    @property
    def size(self) -> int:
        return sum(len(p) for p in self._people_by_region.values())


def _at(index: dict[str, list], codes: Iterable[str]) -> list:
    """What an index by region holds for these regions, in their order."""
    return [item for code in codes for item in index.get(code, ())]


def _wanted(recipient: Person | Group | Device, target: Target) -> bool:
    """Whether the alert's roles and hazards let it reach a recipient. Groups and gateways speak
    to everyone, so an alert for some roles only does not reach them."""
    if not isinstance(recipient, Person):
        return target.roles is None
    if target.roles is not None and recipient.role not in target.roles:
        return False
    return not recipient.hazards or not target.hazards or any(h.lower() in target.hazards for h in recipient.hazards)
