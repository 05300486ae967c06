"""Errors that mean "the user asked for something we cannot do", as opposed to bugs.

The CLI prints the message of a :class:`ReIDError` as one sentence and exits non-zero; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class ReIDError(Exception):
    """A user's mistake or an unusable input; the message says what and what to do."""


class ImageLoadError(ReIDError):
    """One image file could not be used; ``reason`` is a short phrase such as "file is empty"."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
