"""Registry files in and out: CSV, the spreadsheet a street office keeps (English or Chinese
headers, UTF-8 or GB18030), and YAML (the shape of ``config/registry.yaml``).

An import reads the whole file and reports every problem at once, each with the file, line and
field ("people.csv line 14: phone '1381234' is not a valid number"); nothing is written unless
the whole file is good, checked against the registry it would change (regions, backups and
supervisors must exist; ids are unique across people, groups and gateways). Records are added
or replaced by id; with ``replace`` the kinds in the file are replaced whole.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from contacts.registry import Device, Group, Person, RegionRecord, Registry, RegistryError, flatten, Region
from contacts.store import key_of, plain

COLUMNS: dict[str, list[str]] = {
    "regions": ["code", "name", "level", "parent", "lat", "lon", "boundary"],
    "people": ["id", "name", "role", "region", "phone", "channels", "hazards", "backup", "supervisor", "lat", "lon",
               "telegram_chat_id"],
    "groups": ["id", "name", "region", "channel", "webhook", "secret"],
    "devices": ["id", "name", "region", "lat", "lon", "key"],
}
MODELS: dict[str, type[BaseModel]] = {"regions": RegionRecord, "people": Person, "groups": Group, "devices": Device}
LISTS = ("channels", "hazards")  # cells of several values, separated by ';'
HEADERS = {  # Chinese column names a spreadsheet may use
    "编号": "id", "工号": "id", "设备编号": "id", "群编号": "id", "区划代码": "region", "所属区划": "region",
    "姓名": "name", "名称": "name", "区划名称": "name", "设备名称": "name", "群名称": "name",
    "角色": "role", "职务": "role", "手机": "phone", "手机号": "phone", "手机号码": "phone", "联系电话": "phone",
    "渠道": "channels", "通知渠道": "channels", "关注灾种": "hazards", "灾种": "hazards",
    "AB角": "backup", "备岗人": "backup", "备份人": "backup", "上级": "supervisor", "主管": "supervisor",
    "纬度": "lat", "经度": "lon", "密钥": "key", "设备密钥": "key", "机器人地址": "webhook", "webhook地址": "webhook",
    "签名密钥": "secret", "加签密钥": "secret", "应用": "channel", "平台": "channel",
    "代码": "code", "层级": "level", "级别": "level", "上级区划": "parent", "上级代码": "parent", "边界": "boundary",
}
VALUES = {  # Chinese cell values
    "role": {"信息员": "info_officer", "灾害信息员": "info_officer", "安全员": "safety_officer",
             "值班员": "duty_officer", "值班人员": "duty_officer", "领导": "leader", "负责人": "leader",
             "专职人员": "staff", "工作人员": "staff"},
    "level": {"区": "district", "县": "district", "区县": "district", "街道": "street", "乡": "street", "镇": "street",
              "乡镇": "street", "社区": "community", "村": "community"},
    "channel": {"企业微信": "wecom", "钉钉": "dingtalk", "飞书": "feishu"},
    "channels": {"短信": "sms", "语音": "voice", "电话": "voice", "企业微信": "wecom", "钉钉": "dingtalk",
                 "飞书": "feishu"},
}


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


class ImportFailed(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


@dataclass
class Batch:
    """What a file holds: records by kind, each with the line it came from."""

    file: str
    records: dict[str, list[tuple[int | None, BaseModel]]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # of single records; ``plan`` adds the rest


@dataclass
class Plan:
    """What an import changes: the records to write and remove, and the registry it makes."""

    registry: Registry
    upserts: dict[str, list[BaseModel]]
    removals: dict[str, list[str]]
    summary: dict[str, dict[str, int]]


# --- reading -----------------------------------------------------------------------------------


def read(data: bytes, file: str, kind: str | None = None) -> Batch:
    """A CSV (one kind, told by ``kind`` or its columns) or YAML/JSON file (any kinds)."""
    if file.lower().endswith((".yaml", ".yml", ".json")):
        return read_yaml(data, file)
    return read_csv(data, file, kind)


def _decode(data: bytes, file: str) -> str:
    for encoding in ("utf-8-sig", "gb18030"):  # Excel in China saves CSV as GB18030 (GBK)
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ImportFailed([Problem(file, None, "is neither UTF-8 nor GB18030 text")])


def read_csv(data: bytes, file: str, kind: str | None = None) -> Batch:
    rows = list(csv.reader(io.StringIO(_decode(data, file))))
    if not rows:
        raise ImportFailed([Problem(file, None, "is empty")])
    header = [HEADERS.get(h.strip(), h.strip().lower()) for h in rows[0]]
    kind = kind or _kind_of(header)
    if kind not in COLUMNS:
        raise ImportFailed([Problem(file, 1, "cannot tell what the file holds: name --kind (people, devices, "
                                             "groups or regions), or use their columns")])
    problems = [Problem(file, 1, f"unknown column {h!r} (columns: {', '.join(COLUMNS[kind])})")
                for h in header if h not in COLUMNS[kind]]
    problems += [Problem(file, 1, f"column {h!r} appears twice") for h in sorted(set(header)) if header.count(h) > 1]
    if problems:
        raise ImportFailed(problems)
    batch = Batch(file, {kind: []})
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            problems.append(Problem(file, line, f"{len(row)} cells for {len(header)} columns"))
            continue
        cells = {h: _cell(h, v) for h, v in zip(header, row) if v.strip()}
        _validate(kind, cells, file, line, batch, problems)
    batch.problems = problems
    return batch


def _kind_of(header: list[str]) -> str | None:
    for kind, marker in (("groups", "webhook"), ("devices", "key"), ("regions", "level"), ("people", "role"),
                         ("people", "phone")):
        if marker in header:
            return kind
    return None


def _cell(column: str, value: str) -> Any:
    value = value.strip()
    if column in LISTS:
        return [VALUES[column].get(v.strip(), v.strip()) for v in value.replace("；", ";").split(";") if v.strip()]
    if column == "phone" and value.endswith(".0"):  # a number a spreadsheet turned into a float
        value = value[:-2]
    return VALUES.get(column, {}).get(value, value)


def read_yaml(data: bytes, file: str) -> Batch:
    try:
        doc = yaml.load(_decode(data, file), Loader=_LineLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ImportFailed([Problem(file, mark.line + 1 if mark else None, str(getattr(exc, "problem", exc)))]) from exc
    if not isinstance(doc, dict):
        raise ImportFailed([Problem(file, 1, "expected a mapping of regions, people, groups and devices")])
    problems: list[Problem] = []
    unknown = [k for k in doc if k not in COLUMNS and k != "__line__"]
    problems += [Problem(file, doc["__line__"], f"unknown section {k!r}") for k in unknown]
    batch = Batch(file)
    regions = doc.get("regions") or []
    if regions:  # a tree, as in the sample registry
        batch.records["regions"] = []
        for node in regions:
            try:
                tree = Region.model_validate(_strip_lines(node))
            except ValidationError as exc:
                problems += _problems(exc, file, node.get("__line__") if isinstance(node, dict) else None)
                continue
            lines = _region_lines(node)
            batch.records["regions"] += [(lines.get(r.code), r) for r in flatten([tree])]
    for kind in ("people", "groups", "devices"):
        items = doc.get(kind) or []
        if items:
            batch.records[kind] = []
        for item in items:
            line = item.get("__line__") if isinstance(item, dict) else None
            _validate(kind, _strip_lines(item), file, line, batch, problems)
    batch.problems = problems
    return batch


class _LineLoader(yaml.SafeLoader):
    """A safe loader that notes each mapping's line under ``__line__``, and refuses aliases: a
    few lines of nested aliases would otherwise expand into gigabytes ("billion laughs")."""

    def compose_node(self, parent, index):  # noqa: ANN001 - yaml's signature
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted in a registry file",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 - yaml's signature
        mapping = super().construct_mapping(node, deep=deep)
        mapping["__line__"] = node.start_mark.line + 1
        return mapping


def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


def _region_lines(node: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    if isinstance(node, dict):
        out[str(node.get("code"))] = node.get("__line__")
        for child in node.get("children") or []:
            out |= _region_lines(child)
    return out


def _validate(kind: str, cells: dict, file: str, line: int | None, batch: Batch, problems: list[Problem]) -> None:
    try:
        batch.records[kind].append((line, MODELS[kind].model_validate(cells)))
    except ValidationError as exc:
        problems += _problems(exc, file, line)


def _problems(exc: ValidationError, file: str, line: int | None) -> list[Problem]:
    out = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        if where and not message.startswith(where.split(".")[0]):
            value = e.get("input")
            shown = f" {value!r}" if isinstance(value, (str, int, float)) and e["type"] != "missing" else ""
            message = f"{where}{shown}: {message}"
        out.append(Problem(file, line, message))
    return out


# --- planning ----------------------------------------------------------------------------------


def plan(current: Registry, batch: Batch, *, replace: bool = False) -> Plan:
    """What importing ``batch`` into ``current`` would do; ImportFailed lists every problem."""
    file = batch.file
    problems: list[Problem] = list(batch.problems)
    existing = current.records()
    merged: dict[str, dict[str, BaseModel]] = {}
    for kind, records in existing.items():
        merged[kind] = {} if replace and kind in batch.records else {key_of(r): r for r in records}
    first_line: dict[tuple[str, str], int | None] = {}
    for kind, records in batch.records.items():
        for line, record in records:
            key = key_of(record)
            if (kind, key) in first_line:
                problems.append(Problem(file, line, f"{noun(kind)} {key} appears twice (first on line "
                                                    f"{first_line[(kind, key)]})"))
                continue
            first_line[(kind, key)] = line
            merged[kind][key] = record

    regions = merged["regions"]
    taken: dict[str, str] = {}
    for kind in ("people", "groups", "devices"):
        for key in merged[kind]:
            if key in taken:
                line = first_line.get((kind, key)) or first_line.get((taken[key], key))
                problems.append(Problem(file, line, f"id {key} is both a {noun(taken[key])} and a {noun(kind)}"))
            taken.setdefault(key, kind)
    for (kind, key), line in first_line.items():
        record = merged[kind][key]
        if kind == "regions":
            if record.parent is not None and record.parent not in regions:
                problems.append(Problem(file, line, f"parent {record.parent!r} is not a region"))
            continue
        if record.region not in regions:
            problems.append(Problem(file, line, f"region {record.region!r} is not a region of the registry"))
        if kind == "people":
            for relation in ("backup", "supervisor"):
                other = getattr(record, relation)
                if other is not None and (other == key or other not in merged["people"]):
                    problems.append(Problem(file, line, f"{relation} {other!r} is not another person of the registry"))
    if problems:
        raise ImportFailed(sorted(problems, key=lambda p: p.line or 0))
    try:
        registry = Registry.from_records(*(merged[k].values() for k in ("regions", "people", "groups", "devices")))
    except RegistryError as exc:  # what the file leaves broken elsewhere, e.g. people of a removed region
        raise ImportFailed([Problem(file, None, str(exc))]) from exc

    upserts: dict[str, list[BaseModel]] = {}
    removals: dict[str, list[str]] = {}
    summary: dict[str, dict[str, int]] = {}
    for kind, records in existing.items():
        before = {key_of(r): r for r in records}
        after = merged[kind]
        added = [r for k, r in after.items() if k not in before]
        changed = [r for k, r in after.items() if k in before and _differs(before[k], r)]
        gone = [k for k in before if k not in after]
        upserts[kind], removals[kind] = added + changed, gone
        summary[kind] = {"added": len(added), "changed": len(changed), "removed": len(gone),
                         "unchanged": len(after) - len(added) - len(changed)}
    return Plan(registry, upserts, removals, summary)


def noun(kind: str) -> str:
    return {"people": "person", "regions": "region", "groups": "group", "devices": "device"}[kind]


def _differs(a: BaseModel, b: BaseModel) -> bool:
    return plain(a) != plain(b)


# --- writing -----------------------------------------------------------------------------------


def to_csv(records: Iterable[BaseModel], kind: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS[kind])
    for record in records:
        data = plain(record)
        writer.writerow([";".join(v) if isinstance(v, list) else ("" if v is None else v)
                         for v in (data.get(c) for c in COLUMNS[kind])])
    return out.getvalue()


def to_yaml(registry: Registry) -> str:
    """The whole registry in the shape of ``config/registry.yaml``, secrets included."""
    records = registry.records()
    doc = {"regions": registry.tree(),
           **{kind: [{k: v for k, v in plain(r).items() if v not in (None, [])} for r in records[kind]]
              for kind in ("people", "groups", "devices") if records[kind]}}
    return yaml.safe_dump(_drop_empty(doc), allow_unicode=True, sort_keys=False)


def _drop_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_empty(v) for k, v in value.items() if v not in (None, [])}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value
