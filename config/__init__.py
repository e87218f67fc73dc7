"""Settings of the bot: `load_settings()` reads and checks them, `Settings` holds them."""

from config.settings import (
    BOOLEAN_WORDS,
    DISCORD_STRING_OPTION_MAX_CHARS,
    LOG_LEVELS,
    SETTINGS_TABLE,
    SETTINGS_VARIABLES,
    Secret,
    Settings,
    SettingsError,
    load_settings,
)

__all__ = [
    "BOOLEAN_WORDS",
    "DISCORD_STRING_OPTION_MAX_CHARS",
    "LOG_LEVELS",
    "SETTINGS_TABLE",
    "SETTINGS_VARIABLES",
    "Secret",
    "Settings",
    "SettingsError",
    "load_settings",
]
