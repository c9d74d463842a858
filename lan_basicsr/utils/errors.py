"""User-facing errors.

Anything a user can fix (a bad option file, a missing or corrupt data file, a checkpoint that does not match the
architecture) raises a subclass of :class:`LANError` whose message names the file or key and says what to do.
``tools/*.py`` print such errors on one line and exit with status 2 instead of showing a traceback.
"""

__all__ = ['LANError', 'OptionError', 'DataError', 'CheckpointError']


class LANError(Exception):
    """Base class of errors that are the user's to fix; the message is the whole story."""


class OptionError(LANError):
    """An option file or ``--cfg-options`` value is malformed, missing a key, or names an unknown type."""


class DataError(LANError):
    """A dataset file is missing, unreadable, or inconsistent with its partner (lq vs gt, LMDB meta_info)."""


class CheckpointError(LANError):
    """A checkpoint cannot be read or does not match the network it is loaded into."""
