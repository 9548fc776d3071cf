"""Settings: environment over TOML file over defaults; keys and roles checked."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config import SAMPLE_REGISTRY, Settings, kept_admin_key


def test_toml_then_env(tmp_path, monkeypatch):
    toml = tmp_path / "shaozi.toml"
    toml.write_text('port = 9000\nhost = "0.0.0.0"\n[api_keys]\n"k1" = "viewer"\n[channels.sms]\nrate_per_s = 1\n')
    monkeypatch.setenv("SHAOZI_CONFIG", str(toml))
    monkeypatch.setenv("SHAOZI_PORT", "9100")
    s = Settings()
    assert (s.host, s.port) == ("0.0.0.0", 9100)
    assert s.api_keys == {"k1": "viewer"}
    assert s.channels["sms"].rate_per_s == 1


def test_api_keys_from_env(monkeypatch):
    monkeypatch.setenv("SHAOZI_API_KEYS", "alpha:admin, beta:feed")
    assert Settings().api_keys == {"alpha": "admin", "beta": "feed"}


@pytest.mark.parametrize("value", ["alpha", "alpha:root"])
def test_bad_api_keys_are_refused(monkeypatch, value):
    monkeypatch.setenv("SHAOZI_API_KEYS", value)
    with pytest.raises(ValidationError):
        Settings()


def test_missing_config_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SHAOZI_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError):
        Settings()


def test_generated_secrets_are_kept_and_private(tmp_path):
    s = Settings(data_dir=tmp_path)
    key = kept_admin_key(s)
    assert kept_admin_key(s) == key
    assert (tmp_path / "admin.key").stat().st_mode & 0o077 == 0
    assert s.signing_secret() == s.signing_secret() and len(s.signing_secret()) >= 32


def test_the_example_file_loads_and_escalation_comes_from_env(monkeypatch):
    monkeypatch.setenv("SHAOZI_CONFIG", str(SAMPLE_REGISTRY.with_name("shaozi.example.toml")))
    s = Settings()
    assert [step.do for step in s.escalation["Extreme"]] == ["resend", "voice", "backup", "supervisor"]
    assert s.escalation["Extreme:leader"][0].wait_s == 300
    monkeypatch.setenv("SHAOZI_ESCALATION", '{"Severe": [{"wait_s": 60, "do": "voice"}]}')
    s = Settings()  # tables merge key by key: the environment's Severe replaces the file's
    assert [(step.wait_s, step.do) for step in s.escalation["Severe"]] == [(60, "voice")]
    assert "Extreme" in s.escalation
