"""The one exception type the command line turns into a one-line message and exit code 2."""


class UsageError(ValueError):
    """Bad input from the user: a flag value, a config entry, an unusable output path."""
