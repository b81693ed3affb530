"""The one exception type for bad user input (options, names, files)."""


class ConfigError(ValueError):
    """Bad input: the message names the option, file or field and the fix."""
