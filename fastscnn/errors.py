"""The errors a user can cause, as opposed to bugs.

The ``fastscnn`` command prints a :class:`UserError` as one line on stderr and exits with
status 2; any other exception is a bug and keeps its traceback. Each message names the
argument or file at fault and what was expected. The subclasses also derive from the
built-in exception a Python caller would expect (``ValueError``, ``FileNotFoundError``).
"""
import errno
from pathlib import Path


class UserError(Exception):
    """A problem with what the user asked for or gave: a flag, a file, a folder, a setting."""


class InputError(UserError, ValueError):
    """A value or a file's content that cannot be used."""


class InputNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named (or that a dataset needs) is not there."""


class MissingDependencyError(UserError, RuntimeError):
    """An optional extra that a command needs is not installed (e.g. torch for import-weights)."""


class UnreadableImageError(InputError):
    """An image file that cannot be decoded (truncated, garbled, not an image); names the file.

    Training skips such a sample (and counts it in the log); evaluation and prediction
    report it by path.
    """


class DivergedError(UserError):
    """The loss or the weights stopped being finite; nothing after the last good checkpoint was saved."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped a training run after saving its checkpoint (``signum`` says which)."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum


def no_space(error):
    """True when the OSError ``error`` is a full disk (or a full quota)."""
    return error.errno in (errno.ENOSPC, errno.EDQUOT)


def write_error(error, flag, folder):
    """The UserError for ``error``, an OSError met while writing into ``folder`` (the value of
    ``flag``): a full disk, no permission, a file where a folder should be. None when the
    error is about another path: then it is not the user's to fix, and stays a bug."""
    full = no_space(error)
    inside = error.filename is not None and Path(error.filename).absolute().is_relative_to(Path(folder).absolute())
    if not (full or inside):
        return None
    what = "no space left on the device" if full else f"cannot write {error.filename} ({error.strerror})"
    return UserError(f"{flag} {folder}: {what}")
