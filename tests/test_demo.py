"""``reid demo`` end to end with tiny settings: the field workflow's figures are printed and its
match sheets, gallery and model are written."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from reid.cli.main import app
from reid.config import load_config
from reid.demo import demo_config, open_set_figures, pick_sheets, run_demo
from reid.gallery import Candidate, Match
from reid.pipeline import MatchRow

TINY = ["data.input_size=32", "train.epochs=1", "train.batch_size=8", "train.m_per_class=2",
        "model.embedding_dim=16", "train.device=cpu", "train.num_threads=2"]  # fmt: skip


def test_demo_prints_the_open_set_figures_and_writes_match_sheets(tmp_path):
    out, lines = tmp_path / "demo", []
    run_demo(out, num_individuals=2, images_per=6, num_reference=2, num_never_seen=2,
             max_sheets=3, gradcam_examples=1, overrides=TINY, progress=False,
             log=lines.append)  # fmt: skip
    text = "\n".join(lines)
    known = re.search(r"known individuals, later date \((\d+) photos\): rank-1 ([\d.]+)%", text)
    new = re.search(r"never-seen individuals \((\d+) photos\): called NEW ([\d.]+)%", text)
    assert known and new, text
    # 2 known + 2 reference individuals x 2 later-date photos; 2 never-seen x 2 photos
    assert int(known[1]) == 8 and int(new[1]) == 4
    assert 0 <= float(known[2]) <= 100 and 0 <= float(new[2]) <= 100
    assert re.search(r"NEW threshold -?[\d.]+ at target false-match rate 5%", text)
    assert "individuals the model never trained on played the newcomers" in text
    sheets = sorted((out / "match_sheets").glob("*.png"))
    assert len(sheets) == 3 and f"match sheets: {out / 'match_sheets'} (3 of the 12 photos" in text
    assert (out / "gallery" / "gallery.sqlite").is_file() and (out / "run" / "model.pt").is_file()
    # the run was trained with the installed demo config plus the overrides, nothing else
    assert load_config(out / "run" / "config.yaml") == demo_config(TINY)
    assert demo_config(TINY).model.backbone == load_config("demo").model.backbone


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("field notes")
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code != 0 and "not made by `reid demo`" in result.output
    assert (tmp_path / "notes.txt").read_text() == "field notes"


def _row(top: str, is_new: bool) -> MatchRow:
    """A matched photo whose top candidate is ``top``, called NEW or not."""
    candidates = [Candidate(top, 0.5, 1, Path("g.jpg"))]
    return MatchRow(
        Path("q.jpg"), Match("NEW" if is_new else top, is_new, 0.5, 0.6, True, candidates)
    )


def test_open_set_figures_count_by_hand():
    rows = [
        _row("A", False),  # known A, right and accepted
        _row("A", True),  # known A, right at rank 1 but called NEW
        _row("B", False),  # known C, wrong
        _row("A", True),  # never-seen, called NEW
        _row("B", False),  # never-seen, matched to B: a false match
    ]
    f = open_set_figures(rows, ["A", "A", "C", None, None], trained_ids={"A", "B"})
    assert f["num_known_queries"] == 3 and f["num_never_seen_queries"] == 2
    assert f["known_rank1"] == 2 / 3 and f["known_accepted"] == 1 / 3
    assert f["trained_rank1"] == 1.0 and f["reference_rank1"] == 0.0
    assert f["never_seen_new"] == 0.5


def test_pick_sheets_puts_mistakes_first_then_alternates():
    rows = [_row("A", False), _row("B", False), _row("A", False), _row("A", True), _row("B", True)]
    truth = ["A", "C", "A", None, None]  # row 1 is a mistake (C called B)
    picked, num_wrong = pick_sheets(rows, truth, max_sheets=3)
    assert num_wrong == 1 and picked == [rows[1], rows[0], rows[3]]
    picked, _ = pick_sheets(rows, truth, max_sheets=10)
    assert picked == [rows[1], rows[0], rows[3], rows[2], rows[4]]
