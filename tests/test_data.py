"""Datasets: folders, manifests and splits that keep sightings together."""

from __future__ import annotations

import pytest
from PIL import Image

from reid.errors import ReIDError
from reid.io.datasets import ImageRecord, read_dataset, split_by_individual, split_by_sighting


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)
    return path


def test_folder_per_individual(tmp_path):
    for ind in ("A", "B"):
        for k in range(3):
            _img(tmp_path / ind / f"{k}.jpg")
    (tmp_path / "A" / "readme.txt").write_text("not an image")
    samples = read_dataset(tmp_path)
    assert len(samples) == 6 and {s.individual for s in samples} == {"A", "B"}


def test_manifest_with_optional_and_extra_columns(tmp_path):
    _img(tmp_path / "img" / "1.jpg")
    (tmp_path / "m.csv").write_text(
        "path,individual,date,condition,sighting,population\nimg/1.jpg,JGS1,2025-08-20,evening,s1,native\n"
    )
    (s,) = read_dataset(tmp_path / "m.csv")
    assert s.path == tmp_path / "img" / "1.jpg" and s.individual == "JGS1"
    assert (s.date, s.condition, s.sighting, s.time) == ("2025-08-20", "evening", "s1", "")
    assert s.get("population") == "native"


def test_manifest_row_with_missing_file_is_named(tmp_path):
    _img(tmp_path / "1.jpg")
    (tmp_path / "m.csv").write_text("path,individual\n1.jpg,A\n2.jpg,B\n")
    with pytest.raises(ReIDError, match=r"m.csv line 3: the file .*2.jpg does not exist"):
        read_dataset(tmp_path / "m.csv")


def test_manifest_without_required_columns(tmp_path):
    (tmp_path / "m.csv").write_text("file,animal\n")
    with pytest.raises(ReIDError, match="lacks the column"):
        read_dataset(tmp_path / "m.csv")


def test_missing_dataset_is_named(tmp_path):
    with pytest.raises(ReIDError, match="does not exist"):
        read_dataset(tmp_path / "nothing")


def _sighting_samples():
    # 5 individuals x 5 sightings x 2 photos (e.g. left and right flank of one encounter)
    return [
        ImageRecord(path=f"{i}_{s}_{side}.jpg", individual=f"ind{i}", sighting=f"{s}")
        for i in range(5)
        for s in range(5)
        for side in ("left", "right")
    ]


def test_split_by_sighting_keeps_sightings_together():
    samples = _sighting_samples()
    train, val = split_by_sighting(samples, 0.2, seed=1)
    assert sorted(train + val) == list(range(len(samples)))
    groups_train = {samples[i].group for i in train}
    assert not groups_train & {samples[i].group for i in val}
    assert len(val) == 5 * 1 * 2  # 20% of 5 sightings is 1 sighting per individual
    assert {samples[i].individual for i in val} == {samples[i].individual for i in train}


def test_single_sighting_individual_stays_in_train():
    samples = [ImageRecord(path=f"{k}.jpg", individual="solo", sighting="only") for k in range(4)]
    samples += [ImageRecord(path=f"b{k}.jpg", individual="b", sighting=str(k)) for k in range(5)]
    train, val = split_by_sighting(samples, 0.2)
    assert all(samples[i].individual == "b" for i in val) and set(range(4)) <= set(train)


def test_split_by_individual_is_disjoint():
    samples = _sighting_samples()
    train, test = split_by_individual(samples, 0.4, seed=0)
    ind_train = {samples[i].individual for i in train}
    ind_test = {samples[i].individual for i in test}
    assert len(ind_test) == 2 and not ind_train & ind_test


def test_manifest_with_unquoted_comma_or_wrong_encoding_is_named(tmp_path):
    _img(tmp_path / "1.jpg")
    (tmp_path / "m.csv").write_text("path,individual,location\n1.jpg,A,Hiroshima, Japan\n")
    with pytest.raises(ReIDError, match="line 2 has more fields than the header"):
        read_dataset(tmp_path / "m.csv")
    (tmp_path / "j.csv").write_bytes("path,individual\n1.jpg,オオサンショウウオ\n".encode("cp932"))
    with pytest.raises(ReIDError, match="not UTF-8"):
        read_dataset(tmp_path / "j.csv")


def test_photos_in_the_root_folder_are_not_silently_skipped(tmp_path):
    _img(tmp_path / "loose.jpg")
    _img(tmp_path / "A" / "1.jpg")
    with pytest.raises(ReIDError, match="1 photos lie directly in"):
        read_dataset(tmp_path)


def test_hidden_files_are_ignored(tmp_path):
    _img(tmp_path / "A" / "1.jpg")
    (tmp_path / "A" / "._1.jpg").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    assert [s.path.name for s in read_dataset(tmp_path)] == ["1.jpg"]
