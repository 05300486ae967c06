"""Capture histories: who was seen on which sampling occasion, read from and written to the
files that mark-recapture software exchanges.

- CSV, wide (``reid histories`` writes it): ``individual,[group,]<occasion>,<occasion>...``
  with 0/1 cells; or long-string form as in R's ``marked``: a ``ch`` column of 0/1 strings
  (``0110``), optional ``individual``/``tag``/``id`` and one group column;
- Program MARK ``.inp``: ``<history> <count per group> ... ;`` with ``/* comments */``.

A history row is one animal; frequencies in a ``.inp`` file are expanded into rows.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reid.errors import ReIDError

ID_COLUMNS = ("individual", "id", "tag", "animal")
GROUP_COLUMNS = ("group", "sex", "site", "category", "population")


@dataclass
class CaptureHistories:
    """``matrix`` (I, T) uint8 0/1, one row per individual; ``ids`` (I,) its names;
    ``occasions`` (T,) the occasion labels; ``groups`` (I,) a group label per row ("" where
    none) named ``group_name``."""

    matrix: np.ndarray
    ids: list[str]
    occasions: list[str]
    groups: list[str] = field(default_factory=list)
    group_name: str = ""

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.uint8).reshape(
            len(self.ids), len(self.occasions)
        )
        if not self.groups:
            self.groups = [""] * len(self.ids)
        if self.matrix.shape[1] != len(self.occasions) or len(self.groups) != len(self.ids):
            raise ValueError(
                f"capture histories: matrix {self.matrix.shape}, {len(self.ids)} "
                f"ids, {len(self.occasions)} occasions, {len(self.groups)} groups"
            )

    @property
    def group_labels(self) -> list[str]:
        """The distinct groups, sorted ([""] when there are none)."""
        return sorted(set(self.groups))

    def subset(self, group: str) -> CaptureHistories:
        rows = [i for i, g in enumerate(self.groups) if g == group]
        return CaptureHistories(
            self.matrix[rows],
            [self.ids[i] for i in rows],
            self.occasions,
            [group] * len(rows),
            self.group_name,
        )

    def strings(self) -> list[str]:
        return ["".join("1" if v else "0" for v in row) for row in self.matrix]


def read_histories(path: str | Path) -> CaptureHistories:
    """A capture-history CSV (wide or ``ch`` form) or a MARK ``.inp`` file; every cell must be
    0 or 1, and a bad one is named by row and column."""
    path = Path(path)
    if not path.is_file():
        raise ReIDError(f"{path}: no such capture-history file")
    if path.suffix.lower() == ".inp":
        return read_inp(path)
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
        columns = list(rows[0].keys()) if rows else []
    if not rows:
        raise ReIDError(f"{path}: no capture histories (an empty file or a header only)")
    lower = {c.lower(): c for c in columns}
    id_col = next((lower[c] for c in ID_COLUMNS if c in lower), None)
    group_col = next((lower[c] for c in GROUP_COLUMNS if c in lower), None)
    if "ch" in lower:
        return _from_strings(path, rows, lower["ch"], id_col, group_col)
    occasions = [c for c in columns if c not in (id_col, group_col)]
    if not occasions:
        raise ReIDError(
            f"{path}: no occasion columns; give a 'ch' column of 0/1 strings or "
            "one 0/1 column per occasion"
        )
    matrix = np.zeros((len(rows), len(occasions)), np.uint8)
    for i, row in enumerate(rows):
        for j, occasion in enumerate(occasions):
            cell = (row.get(occasion) or "").strip()
            if cell not in ("0", "1"):
                raise ReIDError(
                    f"{path}: {_where(row, id_col, i)}, column {occasion!r}: {cell!r} is not 0 or 1"
                )
            matrix[i, j] = int(cell)
    ids = [_name(row, id_col, i) for i, row in enumerate(rows)]
    groups = [(row.get(group_col) or "").strip() for row in rows] if group_col else []
    return CaptureHistories(matrix, ids, occasions, groups, group_col or "")


def _name(row: dict, id_col: str | None, i: int) -> str:
    return (row.get(id_col) or "").strip() if id_col else str(i + 1)


def _where(row: dict, id_col: str | None, i: int) -> str:
    """``row 5 (JGS012)`` (file line numbers: the header is line 1)."""
    return f"row {i + 2}" + (f" ({_name(row, id_col, i)})" if id_col else "")


def _from_strings(
    path: Path, rows: list[dict], ch_col: str, id_col: str | None, group_col: str | None
) -> CaptureHistories:
    histories = [(row.get(ch_col) or "").strip() for row in rows]
    width = len(histories[0])
    for i, h in enumerate(histories):
        bad = re.search(r"[^01]", h)
        if bad or len(h) != width or not h:
            what = (
                f"{bad.group()!r} is not 0 or 1" if bad else f"has {len(h)} occasions, not {width}"
            )
            raise ReIDError(f"{path}: {_where(rows[i], id_col, i)}: history {h!r} {what}")
    matrix = np.array([[int(c) for c in h] for h in histories], np.uint8)
    ids = [_name(row, id_col, i) for i, row in enumerate(rows)]
    groups = [(row.get(group_col) or "").strip() for row in rows] if group_col else []
    return CaptureHistories(
        matrix, ids, [str(j + 1) for j in range(width)], groups, group_col or ""
    )


def read_inp(path: str | Path) -> CaptureHistories:
    """A Program MARK ``.inp`` file: each record ``<0/1 history> <count> [<count> ...];`` with
    one count per group (frequencies are expanded into rows; a ``/* tag */`` before a record
    names it). Negative counts (losses on capture) are refused: these estimators do not model
    them."""
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    matrix, ids, groups, width, num_groups = [], [], [], None, None
    names: dict[str, str] = {}  # group number -> name, from a "Group 1=Males" header comment
    offset = 0
    for record in text.split(";"):
        start, offset = offset, offset + len(record) + 1
        # a /* tag */ names the record only on the history's own line (else it is a header)
        tags = re.findall(r"/\*([^\n]*?)\*/[ \t]*[01]+[ \t]", record)
        names.update(re.findall(r"Group\s+(\d+)\s*=\s*([^\s*]+)", record))
        body = re.sub(r"/\*.*?\*/", " ", record, flags=re.S).split()
        if not body:
            continue
        history, counts = body[0], body[1:]
        line = text.count("\n", 0, start + record.find(body[0])) + 1
        if not re.fullmatch(r"[01]+", history) or (width and len(history) != width):
            raise ReIDError(
                f"{path}: record near line {line}: history {history!r} is not a "
                f"string of {width or 'some'} 0/1 characters"
            )
        if not counts or not all(re.fullmatch(r"-?\d+", c) for c in counts):
            raise ReIDError(
                f"{path}: record near line {line} ({history}): counts {counts} are "
                "not whole numbers, one per group"
            )
        if num_groups is not None and len(counts) != num_groups:
            raise ReIDError(
                f"{path}: record near line {line} ({history}) has {len(counts)} "
                f"group counts, earlier records {num_groups}"
            )
        if any(int(c) < 0 for c in counts):
            raise ReIDError(
                f"{path}: record near line {line} ({history}) has a negative count "
                "(a loss on capture); remove those animals' records first"
            )
        width, num_groups = len(history), len(counts)
        tag = tags[-1].strip() if tags else ""
        for g, c in enumerate(counts):
            for _ in range(int(c)):
                matrix.append([int(ch) for ch in history])
                ids.append(tag if tag and int(c) == 1 else f"{tag or history}#{len(ids) + 1}")
                groups.append(str(g + 1) if num_groups > 1 else "")
    groups = [names.get(g, g) for g in groups]
    if not matrix:
        raise ReIDError(f"{path}: no capture-history records")
    return CaptureHistories(
        np.array(matrix, np.uint8),
        ids,
        [str(j + 1) for j in range(width)],
        groups,
        "group" if (num_groups or 0) > 1 else "",
    )


def write_csv(histories: CaptureHistories, path: str | Path) -> Path:
    """The wide CSV ``individual,[group,]<occasions...>`` (written whole, then renamed)."""
    head = [
        "individual",
        *([histories.group_name or "group"] if any(histories.groups) else []),
        *histories.occasions,
    ]
    rows = []
    for name, group, row in zip(histories.ids, histories.groups, histories.matrix, strict=True):
        rows.append([name, *([group] if any(histories.groups) else []), *map(int, row)])
    return _write_rows(Path(path), [head, *rows])


def write_marked_csv(histories: CaptureHistories, path: str | Path) -> Path:
    """The shape R's ``marked``/``RMark`` read: ``ch`` (0/1 string), ``individual`` and the
    group column as a factor. Read it with ``read.csv(f, colClasses = c(ch = "character"))``
    so that leading zeros stay."""
    group = histories.group_name or "group"
    head = ["ch", "individual", *([group] if any(histories.groups) else [])]
    rows = [
        [ch, name, *([g] if any(histories.groups) else [])]
        for ch, name, g in zip(histories.strings(), histories.ids, histories.groups, strict=True)
    ]
    return _write_rows(Path(path), [head, *rows])


def write_inp(histories: CaptureHistories, path: str | Path, title: str = "") -> Path:
    """A Program MARK ``.inp`` file: one record per individual, ``/* name */ history counts ;``
    with one count column per group (groups in sorted order, named in the header comment)."""
    labels = histories.group_labels
    header = title or f"{len(histories.ids)} individuals, {len(histories.occasions)} occasions"
    lines = [f"/* {header}", f"   occasions: {', '.join(histories.occasions)}"]
    if len(labels) > 1:
        lines.append("   " + " ".join(f"Group {k + 1}={g}" for k, g in enumerate(labels)))
    lines[-1] += " */"
    for name, group, ch in zip(histories.ids, histories.groups, histories.strings(), strict=True):
        counts = " ".join("1" if g == group else "0" for g in labels)
        lines.append(f"/* {name.replace('*/', '* /')} */ {ch} {counts};")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _write_rows(path: Path, rows: Sequence[Sequence[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    tmp.replace(path)
    return path
