"""A synthetic registry of any size, for load tests, benchmarks and drills on a test system.

Codes follow the sample district's shape (420116 + street + community); names and phone
numbers are made up (+86 139 xxxx xxxx, numbered from 0), and so are the gateways' keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from contacts.registry import Device, Person, Region, Registry

SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def synthetic(people: int, *, streets: int = 10, communities_per_street: int = 20,
              district: str = "420116", devices: int = 0) -> tuple[list[Region], list[Person], list[Device]]:
    street_regions = []
    community_codes = []
    for s in range(1, streets + 1):
        children = []
        for c in range(1, communities_per_street + 1):
            code = f"{district}{s:03d}{c:03d}"
            children.append(Region(code=code, name=f"第{s}街道第{c}社区", level="community"))
            community_codes.append(code)
        street_regions.append(Region(code=f"{district}{s:03d}000", name=f"第{s}街道", level="street",
                                     children=children))
    root = Region(code=f"{district}000000", name="测试区", level="district", children=street_regions)
    persons = [
        Person(id=f"s{i:06d}", name=f"测试{i}", role="info_officer",
               region=community_codes[i % len(community_codes)], phone=f"+86139{i:08d}", channels=["sms"])
        for i in range(people)
    ]
    gateways = [Device(id=f"gw{i:05d}", name=f"大喇叭{i}", region=community_codes[i % len(community_codes)],
                       key=f"sample-key-{i}") for i in range(devices)]
    return [root], persons, gateways


def synthetic_registry(people: int, **kw) -> Registry:
    regions, persons, gateways = synthetic(people, **kw)
    return Registry(regions, persons, devices=gateways)


def write_registry(path: Path, people: int, **kw) -> Path:
    regions, persons, gateways = synthetic(people, **kw)
    data = {"regions": [r.model_dump() for r in regions],
            "people": [{"id": p.id, "name": p.name, "role": p.role, "region": p.region, "phone": p.phone}
                       for p in persons],
            "devices": [{"id": d.id, "name": d.name, "region": d.region, "key": d.key.get_secret_value()}
                        for d in gateways]}
    if path.suffix == ".json":
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    else:
        path.write_text(yaml.dump(data, Dumper=SafeDumper, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
