"""The one exception type that the CLI turns into a clean error message (no traceback)."""


class AsrdemoError(Exception):
    """A problem the user can fix: bad input, a missing file, a failed check."""
