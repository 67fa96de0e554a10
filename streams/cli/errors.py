"""Errors every command may raise."""


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit code 2."""
