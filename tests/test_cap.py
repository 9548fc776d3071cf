"""CAP intake against real authorities' documents, and CAP output against the schema."""

from __future__ import annotations

import builtins
import socket

import pytest
import xmlschema

from dispatcher.cap import CapError, parse_cap, to_cap
from dispatcher.models import Alert
from tests.conftest import SHARED_CAP, alert_json

SAMPLES = SHARED_CAP / "samples"
VALID = ["australia.xml", "canada.xml", "wcatwc-warning.xml", "weather.xml"]
INVALID = {"invalid.xml": "scope", "canada_errors.xml": "references", "noaa_errors.xml": "urgency",
           "xee.xml": "DTD"}


@pytest.fixture(scope="module")
def cap12():
    return xmlschema.XMLSchema(str(SHARED_CAP / "cap12.xsd"))


@pytest.mark.parametrize("name", VALID)
def test_valid_samples_parse_and_round_trip_to_valid_cap12(name, cap12):
    alert = parse_cap((SAMPLES / name).read_bytes())
    assert alert.identifier and alert.info
    xml = to_cap(alert)
    cap12.validate(xml.decode())
    again = parse_cap(xml)
    assert again.identifier == alert.identifier
    assert [i.event for i in again.info] == [i.event for i in alert.info]


@pytest.mark.parametrize(("name", "says"), INVALID.items())
def test_invalid_samples_are_refused_naming_the_problem(name, says):
    with pytest.raises(CapError) as caught:
        parse_cap((SAMPLES / name).read_bytes())
    assert says in caught.value.detail


def test_xee_is_refused_without_touching_files_or_network(monkeypatch):
    touched = []
    real_open = builtins.open
    monkeypatch.setattr(socket.socket, "connect", lambda self, addr: touched.append(("connect", addr)))
    monkeypatch.setattr(builtins, "open", lambda *a, **k: touched.append(("open", a[0])) or real_open(*a, **k))
    data = (SAMPLES / "xee.xml").read_bytes()
    with pytest.raises(CapError):
        parse_cap(data)
    assert touched == []


def test_adcode_geocodes_are_region_codes():
    xml = to_cap(Alert.model_validate({**alert_json(["420116001000"]), "identifier": "a", "sender": "s",
                                       "sent": "2026-07-01T08:00:00+08:00"}))
    assert b"<valueName>ADCODE</valueName>" in xml
    alert = parse_cap(xml)
    assert alert.region_codes() == ["420116001000"]
    assert b"+08:00" in xml and b"Z<" not in xml


def test_cap_times_carry_an_offset_never_z(cap12):
    alert = Alert.model_validate({**alert_json(), "identifier": "a", "sender": "s", "sent": "2026-07-01T00:00:00Z"})
    xml = to_cap(alert).decode()
    assert "<sent>2026-07-01T00:00:00+00:00</sent>" in xml
    cap12.validate(xml)
