"""Capture histories: from sightings (calendar occasions, survey sessions, groups), files in
and out (CSV, MARK .inp, marked CSV), bad input named by row, and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from reid.cli.main import app
from reid.ecology.histories import (
    CaptureHistories,
    read_histories,
    write_csv,
    write_inp,
    write_marked_csv,
)
from reid.ecology.sightings import Sighting, build_histories, read_sessions
from reid.errors import ReIDError

SIGHTINGS = [
    Sighting("A", "2025-06-01", "upper"),
    Sighting("A", "2025-06-01T21:10", "upper"),  # the same day twice: one capture
    Sighting("A", "2025-06-09", "upper"),
    Sighting("B", "2025-06-02", "lower"),
    Sighting("C", "2025-07-03", "lower"),
    Sighting("C", "", "lower", "c.jpg"),
]


def test_calendar_occasions_from_sightings():
    h, left = build_histories(SIGHTINGS, "day")
    assert h.ids == ["A", "B", "C"]
    assert h.occasions == ["2025-06-01", "2025-06-02", "2025-06-09", "2025-07-03"]
    assert h.matrix.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    assert [x.sighting.photo for x in left] == ["c.jpg"] and "no date" in left[0].reason
    weeks, _ = build_histories(SIGHTINGS, "week")
    # ISO weeks: 1 June 2025 is a Sunday (week 22), 2 June a Monday (week 23)
    assert weeks.occasions == ["2025-W22", "2025-W23", "2025-W24", "2025-W27"]
    months, _ = build_histories(SIGHTINGS, "month", group_of={"A": "native"}, group_name="cat")
    assert months.matrix.tolist() == [[1, 0], [1, 0], [0, 1]]
    assert months.groups == ["native", "", ""] and months.group_name == "cat"


def test_sessions_are_occasions_even_when_empty(tmp_path):
    f = tmp_path / "sessions.csv"
    f.write_text(
        "session,start,end,site\n"
        "s1,2025-06-01,2025-06-02,\n"
        "s2,2025-06-05,2025-06-06,\n"  # nothing seen: still an occasion
        "s3,2025-06-09,2025-06-10,upper\n"
    )
    h, left = build_histories(SIGHTINGS, str(f))
    assert h.occasions == ["s1", "s2", "s3"]
    assert h.matrix.tolist() == [[1, 0, 1], [1, 0, 0]]  # A, B; C was seen outside every session
    reasons = sorted(x.reason for x in left)
    assert any("in no session" in r for r in reasons) and any("no date" in r for r in reasons)


def test_overlapping_sessions_are_refused_by_name(tmp_path):
    f = tmp_path / "sessions.csv"
    f.write_text("session,start,end\nspring,2025-06-01,2025-06-05\nsummer,2025-06-04,2025-06-09\n")
    with pytest.raises(ReIDError, match="'spring' .*'summer'.* overlap"):
        read_sessions(f)
    f.write_text("session,start,end,site\na,2025-06-01,2025-06-05,x\nb,2025-06-01,2025-06-05,y\n")
    assert len(read_sessions(f)) == 2  # the same days at two sites do not overlap
    f.write_text("session,start,end\na,2025-06-01,1 June\n")
    with pytest.raises(ReIDError, match="row 2 .*end '1 June'"):
        read_sessions(f)


def test_files_round_trip(tmp_path):
    h = CaptureHistories(
        np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]]), ["A", "B", "C"], ["d1", "d2", "d3"],
        ["native", "hybrid", "native"], "category",
    )  # fmt: skip
    back = read_histories(write_csv(h, tmp_path / "h.csv"))
    assert back.matrix.tolist() == h.matrix.tolist() and back.ids == h.ids
    assert back.occasions == h.occasions and back.groups == h.groups
    assert back.group_name == "category"
    inp = read_histories(write_inp(h, tmp_path / "h.inp"))
    assert inp.matrix.tolist() == h.matrix.tolist() and inp.ids == h.ids
    assert inp.groups == h.groups  # group names come back from the header comment
    text = (tmp_path / "h.inp").read_text()
    assert "/* A */ 101 0 1;" in text  # Group 1=hybrid, Group 2=native
    marked = read_histories(write_marked_csv(h, tmp_path / "m.csv"))
    assert marked.strings() == ["101", "011", "110"] and marked.groups == h.groups
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == "ch,individual,category"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("individual,d1,d2\nA,1,0\nB,2,1\n", r"row 3 \(B\), column 'd2'|row 3 \(B\), column 'd1'"),
        ("individual,d1,d2\nA,1,0\nB,1,\n", r"row 3 \(B\), column 'd2': '' is not 0 or 1"),
        ("ch,sex\n0101,M\n01x1,F\n", r"h.csv: row 3: history '01x1' 'x' is not 0 or 1"),
        ("ch\n0101\n011\n", r"row 3: history '011' has 3 occasions, not 4"),
        ("individual\n", "no capture histories"),
    ],
)
def test_bad_history_cells_are_named(tmp_path, content, message):
    f = tmp_path / "h.csv"
    f.write_text(content)
    with pytest.raises(ReIDError, match=message):
        read_histories(f)


def test_bad_inp_records_are_named(tmp_path):
    f = tmp_path / "h.inp"
    f.write_text("/* header */\n1101 1;\n1021 1;\n")
    with pytest.raises(ReIDError, match=r"line 3: history '1021'"):
        read_histories(f)
    f.write_text("1101 1;\n0101 -1;\n")
    with pytest.raises(ReIDError, match="negative count"):
        read_histories(f)


def test_cli_estimate_prints_models_and_refuses_bad_input(tmp_path):
    rng = np.random.default_rng(1)
    caught = rng.random((120, 5)) < 0.35
    rows = caught[caught.any(axis=1)].astype(int)
    f = tmp_path / "h.csv"
    f.write_text("ch\n" + "\n".join("".join(map(str, r)) for r in rows) + "\n")
    runner = CliRunner()
    res = runner.invoke(app, ["estimate", str(f), "--model", "m0"])
    assert res.exit_code == 0, res.output
    assert "M0" in res.output and "population size" in res.output
    res = runner.invoke(app, ["estimate", str(f), "--model", "all", "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert "all,Mh2,N," in res.output and "all,CJS phi(.) p(.),phi," in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("individual,d1\nA,3\n")
    res = runner.invoke(app, ["estimate", str(bad)])
    assert res.exit_code == 1 and "row 2 (A), column 'd1': '3' is not 0 or 1" in res.output
    res = runner.invoke(app, ["estimate", str(f), "--model", "m9"])
    assert res.exit_code == 1 and "--model 'm9'" in res.output


def _gallery(tmp_path, dates: list[tuple[str, str, str]]):
    from reid.gallery import Gallery
    from reid.gallery.records import ImageRecord
    from reid.gallery.synthetic import fake_photos, random_unit_vectors

    photos = fake_photos(tmp_path / "photos", len(dates))
    records = [ImageRecord(p, who, date=when, location=where)
               for p, (who, when, where) in zip(photos, dates, strict=True)]  # fmt: skip
    with Gallery.create(tmp_path / "g", model_fingerprint="m", embedding_dim=8) as g:
        g.enroll(records, random_unit_vectors(len(records), 8), model_fingerprint="m")
    return tmp_path / "g"


def test_cli_histories_from_a_gallery_with_exports(tmp_path):
    g = _gallery(tmp_path, [("A", "2025-06-01", "upper"), ("A", "2025-06-08", "upper"),
                            ("B", "2025-06-08", "lower"), ("C", "", "lower")])  # fmt: skip
    out, inp, marked = tmp_path / "h.csv", tmp_path / "h.inp", tmp_path / "m.csv"
    res = CliRunner().invoke(app, ["histories", str(g), "--occasion", "day", "--out", str(out),
                                   "--group-by", "site", "--mark", str(inp),
                                   "--marked", str(marked)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "2 individuals x 2 occasions, 3 captures" in res.output
    assert "1 sighting(s) left out" in res.output and "C " in res.output
    h = read_histories(out)
    assert h.ids == ["A", "B"] and h.matrix.tolist() == [[1, 1], [0, 1]]
    assert h.groups == ["upper", "lower"] and h.group_name == "site"
    assert read_histories(inp).matrix.tolist() == h.matrix.tolist()
    assert read_histories(marked).strings() == ["11", "01"]


def test_cli_histories_refuses_a_gallery_without_dates(tmp_path):
    g = _gallery(tmp_path, [("A", "", ""), ("B", "", "")])
    res = CliRunner().invoke(app, ["histories", str(g), "--out", str(tmp_path / "h.csv")])
    assert res.exit_code == 1
    assert "none of its 2 photos has a date" in res.output and "--date" in res.output
    assert not (tmp_path / "h.csv").exists()


def test_cli_dwca_archive_reads_back_with_a_darwin_core_reader(tmp_path):
    dwca_reader = pytest.importorskip("dwca.read", reason="python-dwca-reader is a test dependency")
    g = _gallery(tmp_path, [("A", "2025-06-01", "upper"), ("A", "2025-06-08", "35.1, 134.2"),
                            ("B", "", "lower")])  # fmt: skip
    sites = tmp_path / "sites.csv"
    sites.write_text("site,latitude,longitude\nupper,35.25,134.5\n")
    out = tmp_path / "dwca.zip"
    res = CliRunner().invoke(app, ["dwca", str(g), "--out", str(out), "--sites", str(sites)])
    assert res.exit_code == 0, res.output
    assert "3 occurrences of 2 individuals (2 dated)" in res.output
    dwc = "http://rs.tdwg.org/dwc/terms/"
    with dwca_reader.DwCAReader(str(out)) as archive:
        assert archive.descriptor.core.type == dwc + "Occurrence"
        rows = [r.data for r in archive]
        assert archive.metadata is not None  # eml.xml parsed
    assert len(rows) == 3 and len({r[dwc + "occurrenceID"] for r in rows}) == 3
    by_date = {r[dwc + "eventDate"]: r for r in rows}
    assert by_date["2025-06-01"][dwc + "decimalLatitude"] == "35.250000"  # from the sites file
    assert by_date["2025-06-08"][dwc + "decimalLongitude"] == "134.200000"  # written out
    lower = by_date[""]
    assert lower[dwc + "organismID"] == "B" and lower[dwc + "locality"] == "lower"
    assert lower[dwc + "decimalLatitude"] == ""
    assert {r[dwc + "identificationVerificationStatus"] for r in rows} == {"verified"}
    assert {r[dwc + "scientificName"] for r in rows} == {"Andrias japonicus"}
