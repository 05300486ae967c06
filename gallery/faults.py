"""Crash points for testing that an interrupted write leaves the gallery consistent.

Set ``REID_GALLERY_CRASH_POINT=<point>:<marker_path>`` in a child process: when the write reaches
``<point>`` it creates ``<marker_path>`` and then sleeps, so the test can SIGKILL it at exactly that
moment. Unset (always, outside tests), :func:`crash_point` costs one dictionary lookup.

Points: ``before_commit`` (photo copies renamed into place, rows inserted, not committed),
``after_commit`` (committed, index not yet saved), ``index_partial`` (``index.faiss`` replaced,
``index_ids.npy`` and the metadata not yet).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV_VAR = "REID_GALLERY_CRASH_POINT"


def crash_point(name: str) -> None:
    """Announce ``name`` through the marker file and hang if the environment asks for it."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    point, _, marker = spec.partition(":")
    if point != name:
        return
    Path(marker).write_text(str(os.getpid()))
    # Sleep instead of exiting: the test kills us with SIGKILL, which is the realistic failure.
    time.sleep(3600)
