"""Synthetic scenes for the head detector: labels that match the heads, in YOLO format."""

import numpy as np
import yaml
from PIL import Image

from reid.synthetic.scenes import SceneLayout, read_scene_heads, synthesize_scenes


def test_scenes_have_yolo_labels_matching_their_heads(tmp_path):
    data = synthesize_scenes(tmp_path, 3, 4, SceneLayout(320, 240, empty_fraction=0.25,
                             second_head_fraction=0.5), seed=1, progress=False)  # fmt: skip
    spec = yaml.safe_load(data.read_text())
    assert spec["names"] == {0: "head"} and (tmp_path / spec["train"]).is_dir()
    rows = read_scene_heads(tmp_path / "scenes.csv")
    scenes = {r["path"] for r in rows}
    assert len(scenes) == 3 * 4 + 3  # 12 scenes with heads + a quarter as many empty ones
    assert {r["individual"] for r in rows} == {"", "JGS001", "JGS002", "JGS003"}
    assert sum(1 for r in rows if not r["individual"]) == 3
    by_scene: dict[str, list] = {}
    for r in rows:
        by_scene.setdefault(r["path"], []).append(r)
    assert any(len(v) == 2 for v in by_scene.values())  # some scenes hold two animals
    for path, heads in by_scene.items():
        image = np.asarray(Image.open(tmp_path / path))
        assert image.shape == (240, 320, 3)
        split = path.split("/")[1]
        label = tmp_path / "labels" / split / (path.split("/")[-1][:-4] + ".txt")
        lines = [line.split() for line in label.read_text().splitlines()]
        boxes = [h for h in heads if h["individual"]]
        assert len(lines) == len(boxes)
        for line, h in zip(lines, boxes, strict=True):
            x1, y1, x2, y2 = (int(h[k]) for k in ("x1", "y1", "x2", "y2"))
            assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240
            cls, cx, cy, w, hh = line[0], *map(float, line[1:])
            assert cls == "0"
            expected = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
            assert np.allclose([cx * 320, cy * 240, w * 320, hh * 240], expected, atol=0.01)


def test_the_box_holds_the_head_and_the_head_differs_from_the_water(tmp_path):
    synthesize_scenes(tmp_path, 2, 3, SceneLayout(320, 240, empty_fraction=0.0,
                      second_head_fraction=0.0), seed=2, progress=False)  # fmt: skip
    for r in read_scene_heads(tmp_path / "scenes.csv"):
        image = np.asarray(Image.open(tmp_path / r["path"]), np.float32)
        x1, y1, x2, y2 = (int(r[k]) for k in ("x1", "y1", "x2", "y2"))
        inside = image[y1:y2, x1:x2].mean(axis=(0, 1))
        # salamander skin is brown (red > blue); the water around is green-blue
        assert inside[0] > inside[2], r


def test_scenes_are_reproducible(tmp_path):
    a = synthesize_scenes(tmp_path / "a", 2, 2, SceneLayout(160, 128), seed=3, progress=False)
    b = synthesize_scenes(tmp_path / "b", 2, 2, SceneLayout(160, 128), seed=3, progress=False)
    ra, rb = read_scene_heads(a.parent / "scenes.csv"), read_scene_heads(b.parent / "scenes.csv")
    assert ra == rb
    first = ra[0]["path"]
    assert np.array_equal(np.asarray(Image.open(a.parent / first)),
                          np.asarray(Image.open(b.parent / first)))  # fmt: skip


def test_cli_synth_scenes(tmp_path):
    from typer.testing import CliRunner

    from reid.cli.main import app

    result = CliRunner().invoke(app, ["synth", str(tmp_path), "--individuals", "2",
                                      "--images-per", "2", "--scenes", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data.yaml").is_file() and len(read_scene_heads(tmp_path / "scenes.csv"))
