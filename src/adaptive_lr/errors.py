"""The one family of errors that are the user's to fix (a config value, a data file, a command's argument)."""

from __future__ import annotations


class UserError(Exception):
    """Bad input, not a bug: the CLI turns any of these into one `error: <message>` line on stderr and exit
    code 2.

    The message is one line that names the key, file or argument and what is allowed. Subclasses keep a
    builtin second base (ValueError, LookupError, FileNotFoundError) so callers catching those still work.
    """


def one_line(err: BaseException) -> str:
    """An exception's message on one line (a multi-line message from a library keeps every line)."""
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())
