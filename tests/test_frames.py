"""Video -> frames at a chosen rate, with timestamps and the recording date."""

import csv
import struct
from datetime import datetime, timezone

import numpy as np
import pytest

from reid.errors import ReIDError
from reid.io.frames import extract_frames, recording_time

cv2 = pytest.importorskip("cv2")


def _video(path, seconds=2.0, fps=30, size=(64, 48)):
    """Frame i is a flat grey of level 4 * i, so a frame's index can be read back."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(int(seconds * fps)):
        writer.write(np.full((size[1], size[0], 3), 4 * i, np.uint8))
    writer.release()
    return path


def _stamp(path, when: datetime):
    """Set the mvhd creation time, as a phone's camera app does."""
    data = bytearray(path.read_bytes())
    at = data.index(b"mvhd") + 4
    assert data[at] == 0  # version 0: 32-bit seconds since 1904
    seconds = int((when - datetime(1904, 1, 1, tzinfo=timezone.utc)).total_seconds())
    data[at + 4 : at + 8] = struct.pack(">I", seconds)
    path.write_bytes(bytes(data))


def _rows(manifest):
    with open(manifest, newline="") as fh:
        return list(csv.DictReader(fh))


def test_ten_frames_per_second_with_timestamps_and_recording_date(tmp_path):
    video = _video(tmp_path / "dive1.mp4")
    when = datetime(2025, 8, 20, 9, 30, 0, tzinfo=timezone.utc)
    _stamp(video, when)
    assert recording_time(video) == when
    out = extract_frames([video], tmp_path / "frames", fps=10, tz=timezone.utc, progress=False,
                         log=lambda _: None)  # fmt: skip
    assert len(out.rows) == 20 and not out.failed
    assert [r.frame for r in out.rows] == list(range(0, 60, 3))
    assert [r.timestamp_s for r in out.rows] == pytest.approx([i / 10 for i in range(20)])
    rows = _rows(out.manifest)
    assert len(rows) == 20 and {r["video"] for r in rows} == {"dive1"}
    assert {r["sighting"] for r in rows} == {"dive1"}  # one video = one sighting
    assert rows[0]["date"] == "2025-08-20" and rows[0]["time"] == "09:30:00"
    assert rows[15]["recorded_at"].startswith("2025-08-20T09:30:01.500")
    # each file is the frame the manifest names (grey level 4 * index, JPEG-rounded)
    img = cv2.imread(str(out.manifest.parent / rows[5]["path"]))
    assert abs(int(img.mean()) - 4 * 15) <= 3


def test_dates_are_in_the_survey_time_zone(tmp_path):
    video = _video(tmp_path / "dawn.mp4", seconds=0.2)
    _stamp(video, datetime(2025, 8, 20, 21, 30, 0, tzinfo=timezone.utc))  # 06:30 next day, JST
    from typer.testing import CliRunner

    from reid.cli.main import app

    result = CliRunner().invoke(app, ["frames", str(video), "--out", str(tmp_path / "f"),
                                      "--utc-offset", "9", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    row = _rows(tmp_path / "f" / "manifest.csv")[0]
    assert (row["date"], row["time"]) == ("2025-08-21", "06:30:00")
    assert row["recorded_at"].endswith("+09:00")
    bad = CliRunner().invoke(app, ["frames", str(video), "--out", str(tmp_path / "g"),
                                   "--utc-offset", "30"])  # fmt: skip
    assert bad.exit_code == 1 and "--utc-offset" in bad.output


def test_a_slow_video_gives_every_frame_and_no_date_when_unstamped(tmp_path):
    video = _video(tmp_path / "slow.mp4", seconds=1.0, fps=5)
    out = extract_frames([video], tmp_path / "f", fps=10, progress=False, log=lambda _: None)
    assert [r.frame for r in out.rows] == [0, 1, 2, 3, 4]
    assert all(r.recorded_at is None for r in out.rows)
    assert _rows(out.manifest)[0]["date"] == ""


def test_a_bad_video_is_reported_and_the_others_are_kept(tmp_path):
    good = _video(tmp_path / "good.mp4", seconds=0.5)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    out_dir = tmp_path / "frames"
    first = extract_frames([good], out_dir, fps=10, progress=False, log=lambda _: None)
    other = _video(tmp_path / "other.mp4", seconds=0.3)
    out = extract_frames([broken, tmp_path / "missing.mp4", other], out_dir, fps=10,
                         progress=False, log=lambda _: None)  # fmt: skip
    assert set(out.failed) == {str(broken), str(tmp_path / "missing.mp4")}
    videos = [r["video"] for r in _rows(out.manifest)]
    # the earlier run's rows stay; the new video's are added
    assert videos.count("good") == len(first.rows) == 5 and videos.count("other") == 3
    assert "skipped" in out.summary()


def test_re_extracting_a_video_replaces_its_frames(tmp_path):
    video = _video(tmp_path / "v.mp4", seconds=1.0)
    out_dir = tmp_path / "frames"
    extract_frames([video], out_dir, fps=10, progress=False, log=lambda _: None)
    extract_frames([video], out_dir, fps=2, progress=False, log=lambda _: None)
    rows = _rows(out_dir / "manifest.csv")
    assert len(rows) == 2 and len(list(out_dir.glob("*.jpg"))) == 2


def test_another_video_of_the_same_name_never_replaces_stored_frames(tmp_path):
    (tmp_path / "cam1").mkdir()
    (tmp_path / "cam2").mkdir()
    first = _video(tmp_path / "cam1" / "GOPR0001.mp4", seconds=0.3)
    second = _video(tmp_path / "cam2" / "GOPR0001.mp4", seconds=0.5)
    out_dir = tmp_path / "frames"
    extract_frames([first], out_dir, fps=10, progress=False, log=lambda _: None)
    extract_frames([second], out_dir, fps=10, progress=False, log=lambda _: None)
    rows = _rows(out_dir / "manifest.csv")
    videos = [r["video"] for r in rows]
    assert videos.count("GOPR0001") == 3 and videos.count("cam2_GOPR0001") == 5
    assert len(list(out_dir.glob("*.jpg"))) == 8
    # the first card's video extracted again still replaces only its own rows
    extract_frames([first], out_dir, fps=10, progress=False, log=lambda _: None)
    assert len(_rows(out_dir / "manifest.csv")) == 8


def test_bad_rate_and_foreign_manifest_are_named(tmp_path):
    with pytest.raises(ReIDError, match="--fps"):
        extract_frames([], tmp_path, fps=0)
    (tmp_path / "manifest.csv").write_text("path,individual\na.jpg,x\n")
    with pytest.raises(ReIDError, match="not a frames manifest"):
        extract_frames([], tmp_path, fps=10)


def test_cli_frames_writes_the_manifest_and_fails_on_a_bad_video(tmp_path):
    from typer.testing import CliRunner

    from reid.cli.main import app

    video = _video(tmp_path / "clip.mp4", seconds=1.0)
    runner = CliRunner()
    result = runner.invoke(app, ["frames", str(video), "--out", str(tmp_path / "f"), "--fps",
                                 "5", "--individual", "JGS001", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "f" / "manifest.csv")
    assert len(rows) == 5 and {r["individual"] for r in rows} == {"JGS001"}
    from reid.io.datasets import read_dataset  # the manifest is a training dataset as it stands

    samples = read_dataset(tmp_path / "f" / "manifest.csv")
    assert len(samples) == 5 and {s.sighting for s in samples} == {"clip"}
    bad = tmp_path / "bad.mov"
    bad.write_bytes(b"x")
    result = runner.invoke(app, ["frames", str(bad), "--out", str(tmp_path / "f"), "--quiet"])
    assert result.exit_code == 1 and "bad.mov" in result.output
    assert len(_rows(tmp_path / "f" / "manifest.csv")) == 5  # nothing lost
