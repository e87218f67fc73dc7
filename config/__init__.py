"""Settings of the bot: `load_settings()` reads and checks them, `Settings` holds them."""

from config.settings import (
    LOG_LEVELS,
    SETTINGS_VARIABLES,
    Secret,
    Settings,
    SettingsError,
    load_settings,
)

__all__ = [
    "LOG_LEVELS",
    "SETTINGS_VARIABLES",
    "Secret",
    "Settings",
    "SettingsError",
    "load_settings",
]
