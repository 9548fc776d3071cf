"""Settings and sample configuration."""

from config.settings import (
    ROLES,
    SAMPLE_REGISTRY,
    ChannelLimits,
    EscalationStep,
    Role,
    Settings,
    kept_admin_key,
    load_settings,
)

__all__ = ["ROLES", "SAMPLE_REGISTRY", "ChannelLimits", "EscalationStep", "Role", "Settings", "kept_admin_key", "load_settings"]
