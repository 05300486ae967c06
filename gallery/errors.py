"""Errors that mean "the user asked for something the gallery cannot do", as opposed to bugs.

The CLI prints the message of a :class:`GalleryError` as one sentence and exits non-zero; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class GalleryError(Exception):
    """A user's mistake (wrong gallery for this model, unknown individual, bad id, ...).

    The message is one sentence that names the thing and says what to do.
    """
