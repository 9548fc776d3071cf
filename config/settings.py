"""Settings: environment variables prefixed ``SHAOZI_``, then an optional TOML file.

Environment wins over the file, the file over the defaults. The file is named by
``--config`` on the command line or ``SHAOZI_CONFIG``.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

Role = Literal["admin", "officer", "feed", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "officer", "feed", "viewer")

SAMPLE_REGISTRY = Path(__file__).with_name("registry.yaml")


class ChannelLimits(BaseModel):
    """How hard a channel may be driven."""

    concurrency: int = Field(64, ge=1, description="sends in flight at once, per worker process")
    rate_per_s: float = Field(0, ge=0, description="sends per second, all workers together; 0 means no limit")
    max_attempts: int = Field(5, ge=1)
    per_address: int = Field(0, ge=0, description="messages to one address (a chat group) per window; 0: no limit")
    per_address_window_s: float = Field(60.0, gt=0)
    throttled_wait_s: float = Field(60.0, gt=0, description="wait after a provider says 'too fast' without saying how long")


Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
PersonRole = Literal["info_officer", "safety_officer", "duty_officer", "leader", "staff"]


class EscalationStep(BaseModel):
    """One step of an escalation policy, taken when the person is still silent."""

    wait_s: float = Field(gt=0, description="seconds to wait for an acknowledgement first: after the first "
                                             "message for the first step, after the previous step for the others")
    do: Literal["resend", "next_channel", "voice", "backup", "supervisor"]


def _steps(*pairs: tuple[float, str]) -> list[EscalationStep]:
    return [EscalationStep(wait_s=w, do=d) for w, d in pairs]


# Extreme warnings escalate within minutes; Minor ones do not escalate.
DEFAULT_ESCALATION: dict[str, list[EscalationStep]] = {
    "Extreme": _steps((180, "resend"), (180, "voice"), (300, "backup"), (300, "supervisor")),
    "Severe": _steps((600, "resend"), (600, "next_channel"), (900, "supervisor")),
    "Moderate": _steps((1800, "resend")),
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHAOZI_", extra="ignore")

    redis_url: str | None = Field(None, description="Redis URL; unset starts an embedded redis-server")
    redis_prefix: str = Field("shaozi", description="prefix of every Redis key")
    mqtt_url: str | None = Field(None, description="mqtt[s]://[user:pass@]host[:port]; unset starts an embedded "
                                                    "broker when the registry has gateways")
    mqtt_prefix: str = Field("shaozi", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    mqtt_ca_file: Path | None = Field(None, description="CA certificates to verify an mqtts broker with "
                                                        "(a private CA); unset: the system's")
    mqtt_ack_timeout_s: float = Field(30.0, gt=0, description="a command no gateway has said 'received' to "
                                                              "within this is sent again")
    mqtt_max_inflight: int = Field(10, ge=1, description="QoS 1 publishes awaiting the broker, per worker")
    mqtt_offline_recheck_s: float = Field(5.0, gt=0, description="how often a command for an offline gateway "
                                                                 "looks again")
    data_dir: Path = Path("./var")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_keys: Annotated[dict[str, Role], NoDecode] = Field(
        default_factory=dict, description="comma-separated key:role pairs"
    )
    registry: Path = SAMPLE_REGISTRY
    public_url: str | None = None
    secret: str | None = Field(None, description="signing key; generated under the data dir if unset")
    log_level: str = "info"
    max_body_bytes: int = Field(1 << 20, ge=1024)
    max_import_bytes: int = Field(64 << 20, ge=1024, description="a registry file posted for import")
    retention_days: float = Field(90, ge=0, description="alerts and their receipts are kept this long; 0 keeps all")

    # Twilio (SMS); with none of it set, SMS goes to the console outbox
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = Field(None, description="sender number, E.164")
    twilio_messaging_service_sid: str | None = None
    twilio_api_base: str | None = Field(None, description="default Twilio's own API host; a relay or a test double")

    # Telegram
    telegram_bot_token: SecretStr | None = None
    telegram_secret_token: SecretStr | None = Field(None, description="checked on every update posted to /hooks/telegram")
    telegram_api_base: str = "https://api.telegram.org"

    # workers
    worker_name: str | None = None
    planner_concurrency: int = Field(2, ge=1)
    plan_part_size: int = Field(20_000, ge=100, description="an alert reaching more people is planned in parts")
    batch_size: int = Field(1000, ge=1, le=10_000)
    reclaim_idle_s: float = Field(60.0, gt=0, description="a pending message idle this long is taken over")
    reclaim_interval_s: float = Field(5.0, gt=0)
    retry_base_s: float = Field(2.0, gt=0)
    retry_max_s: float = Field(300.0, gt=0)
    channels: dict[str, ChannelLimits] = Field(
        default_factory=dict, description="per-channel limits; unset ones take the adapter's defaults"
    )

    # escalation: "<severity>" or "<severity>:<role>" (the role's own policy wins) -> ordered steps
    escalation: dict[str, list[EscalationStep]] = Field(
        default_factory=lambda: dict(DEFAULT_ESCALATION),
        description="per severity, optionally per role; a severity not named does not escalate",
    )
    escalation_interval_s: float = Field(1.0, gt=0, description="how often a worker looks for due escalations")

    # embedded redis
    embedded_redis_appendfsync: Literal["always", "everysec", "no"] = "everysec"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        keys: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in value.split(","))):
            key, sep, role = pair.rpartition(":")
            if not sep or not key:
                raise ValueError(f"API key entry must be key:role, got {pair[:4]}…")
            keys[key] = role
        return keys

    @field_validator("escalation")
    @classmethod
    def _check_escalation(cls, value: dict[str, list[EscalationStep]]) -> dict[str, list[EscalationStep]]:
        for key in value:
            severity, _, role = key.partition(":")
            if severity not in Severity.__args__ or (role and role not in PersonRole.__args__):
                raise ValueError(f"escalation policy {key!r}: name a severity ({', '.join(Severity.__args__)}), "
                                 f"optionally ':' and a role ({', '.join(PersonRole.__args__)})")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        toml_file = os.environ.get("SHAOZI_CONFIG")
        if toml_file:
            if not Path(toml_file).is_file():
                raise FileNotFoundError(f"config file {toml_file} does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    def process_name(self) -> str:
        """This worker's name: its consumer name in Redis and its MQTT client id. Set
        SHAOZI_WORKER_NAME to keep one across restarts (and its MQTT session with it)."""
        return self.worker_name or f"{socket.gethostname()}-{os.getpid()}"

    def limits(self, channel: str, adapter: object) -> ChannelLimits:
        return self.channels.get(channel) or adapter.default_limits

    def signing_secret(self) -> str:
        """The signing key: from settings, else generated once and kept under the data dir."""
        if self.secret:
            return self.secret
        return _kept_secret(self.data_dir / "secret", lambda: secrets.token_urlsafe(32))

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token
                    and (self.twilio_from or self.twilio_messaging_service_sid))

    def callbacks_reachable(self) -> bool:
        """Whether a provider on the internet can call us back at the public URL."""
        host = urlsplit(self.base_url()).hostname or ""
        return bool(self.public_url) and host not in ("localhost", "127.0.0.1", "::1", "0.0.0.0")

    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


def _kept_secret(path: Path, make: callable) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def load_settings(config_file: str | Path | None = None, **overrides: object) -> Settings:
    if config_file:
        os.environ["SHAOZI_CONFIG"] = str(config_file)
    return Settings(**overrides)


def kept_admin_key(settings: Settings) -> str:
    """The admin key created on first start when no API keys are configured."""
    return _kept_secret(settings.data_dir / "admin.key", lambda: "sz_" + secrets.token_urlsafe(24))
