"""reid discover on a calibrated gallery: never-seen photos grouped into proposed individuals,
a manifest that reid enroll takes, a report and sheets; known photos are not grouped."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

from reid.cli.main import app

CPU = ["--quiet", "--device", "cpu"]


def _ok(args: list) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return re.sub(r"\x1b\[[0-9;]*m", "", result.output)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, tiny_run, tiny_data) -> Path:
    gallery = tmp_path_factory.mktemp("discover") / "gallery"
    _ok(["enroll", gallery, tiny_data, "--model", tiny_run, *CPU])
    _ok(["calibrate", gallery, "--model", tiny_run, "--target-fmr", "0.1", "--quiet"])
    return gallery


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> dict[str, list[Path]]:
    """Two never-seen individuals, three photos each: one photo and two copies of it (another
    exposure, and a turned one), so that the right grouping is certain."""
    from reid.synthetic.salamanders import synthesize

    out = tmp_path_factory.mktemp("batch")
    manifest = synthesize(out / "src", 2, 2, seed=11, size=64, num_dates=1, first_index=50,
                          progress=False)  # fmt: skip
    photos: dict[str, list[Path]] = {}
    for p in sorted((manifest.parent / "images").rglob("*.jpg")):
        who = p.parent.name
        if who in photos:
            continue
        img = Image.open(p).convert("RGB")
        copies = [out / f"{who}_a.jpg", out / f"{who}_b.jpg", out / f"{who}_c.jpg"]
        img.save(copies[0])
        ImageEnhance.Brightness(img).enhance(0.8).save(copies[1])
        img.rotate(90, expand=True).save(copies[2])
        photos[who] = copies
    return photos


def test_discover_groups_newcomers_and_writes_an_enrollable_manifest(
    calibrated, batch, tiny_run, tiny_data, tmp_path
):
    gallery = tmp_path / "gallery"
    shutil.copytree(calibrated, gallery)
    known = next((tiny_data.parent / "images").rglob("*.jpg"))  # an enrolled animal's photo
    photos = [p for group in batch.values() for p in group]
    out_dir = tmp_path / "found"
    out = _ok(["discover", *photos, known, "--gallery", gallery, "--model", tiny_run,
               "--out", out_dir, "--prefix", "cand-", *CPU])  # fmt: skip
    report = json.loads((out_dir / "groups.json").read_text())
    grouped = [Path(p).name for g in report["groups"] for p in g["photos"]]
    assert sorted(grouped) == sorted(p.name for p in photos)  # every newcomer once, known none
    assert known.name not in grouped and report["known"][0]["photo"].endswith(known.name)
    assert report["score"].startswith("fused P(same)")
    # each individual's three photos share a group, and the two individuals do not
    where = {Path(p).name: g["individual"] for g in report["groups"] for p in g["photos"]}
    for who, copies in batch.items():
        assert len({where[c.name] for c in copies}) == 1, (who, where)
    assert len({where[c[0].name] for c in batch.values()}) == 2
    assert "2 proposed new individual(s)" in out
    sheets = sorted((out_dir / "sheets").glob("group_*.png"))
    assert len(sheets) == 2 and all(Image.open(s).size[0] > 100 for s in sheets)
    with (out_dir / "groups.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["individual"] for r in rows} == {"cand-001", "cand-002"}
    assert all(r["group_size"] == "3" for r in rows)
    # the reviewer renames one group and enrolls the manifest
    for r in rows:
        r["individual"] = r["individual"].replace("cand-001", "Hanako")
    edited = tmp_path / "reviewed.csv"
    with edited.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _ok(["enroll", gallery, edited, "--model", tiny_run, *CPU])
    info = json.loads(_ok(["gallery", "info", gallery]))
    assert info["num_individuals"] == 4 + 2
    # matched again, the newcomers now name their new individuals instead of NEW
    again = _ok(["discover", *batch[next(iter(batch))], "--gallery", gallery, "--model",
                 tiny_run, "--out", tmp_path / "again", *CPU])  # fmt: skip
    assert "3 of known individuals, 0 new" in again and "no new individuals proposed" in again


def test_survey_estimates_n_naively_and_with_identification_error(calibrated, tiny_run,
                                                                   tmp_path):  # fmt: skip
    from reid.synthetic.salamanders import synthesize

    manifest = synthesize(tmp_path / "survey", 6, 3, seed=21, size=64, num_dates=3,
                          first_index=70, progress=False)  # fmt: skip
    out_dir = tmp_path / "out"
    out = _ok(["survey", manifest.parent / "images", "--gallery", calibrated, "--model",
               tiny_run, "--dates", manifest, "--draws", "5", "--out", out_dir, *CPU])  # fmt: skip
    assert "18 photos over 3 occasions" in out
    # each of the 6 animals was photographed on all 3 dates: N sits at its boundary, 6
    assert re.search(r"N \(M0, identification taken as certain\): \d+\.\d", out)
    assert re.search(r"N, identification error carried in \(\d+ imputations\): \d+\.\d \[", out)
    report = json.loads((out_dir / "survey.json").read_text())
    assert report["score"].startswith("fused") and len(report["occasions"]) == 3
    aware = report["error_aware"]
    assert aware["lcl"] <= aware["n_hat"] <= aware["ucl"]
    assert [r["fmr"] for r in report["curve"]] == [0.01, 0.02, 0.05, 0.1, 0.2]
    assert (out_dir / "threshold.png").is_file()
    with (out_dir / "histories.csv").open() as f:
        rows = list(csv.reader(f))
    assert len(rows[0]) == 1 + 3 and len(rows) >= 2


def test_survey_without_dates_says_what_to_do(calibrated, tiny_run, tiny_data, tmp_path):
    photo = next((tiny_data.parent / "images").rglob("*.jpg"))
    result = CliRunner().invoke(app, [str(a) for a in ["survey", photo, "--gallery", calibrated,
                                      "--model", tiny_run, "--out", tmp_path, *CPU]])  # fmt: skip
    assert result.exit_code == 1
    assert "at least two occasions (dates from EXIF or --dates)" in result.output


def test_demo_like_gallery_exports_read_back(calibrated, tmp_path):
    """A gallery enrolled from synthetic salamanders with dates, as `reid demo` builds one:
    its MARK .inp and Darwin Core Archive read back (the archive by python-dwca-reader)."""
    dwca_read = pytest.importorskip("dwca.read", reason="python-dwca-reader is a test dependency")
    from reid.ecology.histories import read_histories

    inp, archive = tmp_path / "h.inp", tmp_path / "dwca.zip"
    out = _ok(["histories", calibrated, "--occasion", "day", "--out", tmp_path / "h.csv",
               "--mark", inp])  # fmt: skip
    assert "4 individuals x 2 occasions" in out
    back = read_histories(inp)
    assert back.matrix.shape == (4, 2) and back.ids == read_histories(tmp_path / "h.csv").ids
    _ok(["dwca", calibrated, "--out", archive])
    dwc = "http://rs.tdwg.org/dwc/terms/"
    with dwca_read.DwCAReader(str(archive)) as a:
        rows = [r.data for r in a]
    assert len(rows) == 32 and len({r[dwc + "organismID"] for r in rows}) == 4
    assert all(r[dwc + "eventDate"] for r in rows)


RMARK_CONVERT_INP = os.environ.get("REID_RMARK_CONVERT_INP", "")


@pytest.mark.skipif(
    not (shutil.which("Rscript") and Path(RMARK_CONVERT_INP).is_file()),
    reason="needs R (Rscript) and RMark's R/convert.inp.r (github.com/jlaake/RMark) named by "
    "REID_RMARK_CONVERT_INP; CRAN is unreachable here, so RMark cannot be installed as a package",
)
def test_demo_like_gallery_inp_is_read_by_rmark(calibrated, tmp_path):
    """The same gallery's MARK .inp (grouped by population) read by RMark's own convert.inp: every
    individual comes back with its history, a count of 1 and its group."""
    import subprocess

    from reid.ecology.histories import read_histories

    inp, table, groups = tmp_path / "h.inp", tmp_path / "h.csv", tmp_path / "groups.csv"
    groups.write_text("individual,population\nJGS001,hybrid\nJGS002,native\nJGS003,native\n"
                      "JGS004,native\n")  # fmt: skip
    _ok(["histories", calibrated, "--occasion", "day", "--out", table, "--group-by", groups,
         "--mark", inp])  # fmt: skip
    ours = read_histories(table)
    labels = sorted(set(ours.groups))
    assert len(labels) > 1  # the test is about groups too
    script = tmp_path / "read.R"
    script.write_text(
        f'source("{RMARK_CONVERT_INP}")\n'
        f"groups <- data.frame(population = c({', '.join(repr(g) for g in labels)}))\n"
        f'df <- convert.inp("{inp}", group.df = groups, use.comments = TRUE)\n'
        f'write.csv(data.frame(id = trimws(row.names(df)), df), "{tmp_path / "rmark.csv"}", '
        "row.names = FALSE)\n"
    )
    subprocess.run(["Rscript", str(script)], check=True, capture_output=True, timeout=120)
    with (tmp_path / "rmark.csv").open() as f:
        rmark = {r["id"]: (r["ch"], r["freq"], r["population"]) for r in csv.DictReader(f)}
    expected = {i: (ch, "1", g) for i, ch, g in zip(ours.ids, ours.strings(), ours.groups,
                                                    strict=True)}  # fmt: skip
    assert rmark == expected
