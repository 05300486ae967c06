"""Training, resume, evaluation and the per-condition protocol on tiny synthetic data."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from reid.config import load_config
from reid.errors import ReIDError
from reid.evaluation.evaluate import evaluate_run
from reid.evaluation.lighting import run_condition_protocol
from reid.features.checkpoint import load_checkpoint
from reid.features.embedder import Embedder
from reid.io.datasets import ImageRecord, read_dataset
from reid.training.loop import train


def _scratch_cfg(*overrides: str):
    """A tiny randomly initialised model for tests of the training mechanics, not of accuracy."""
    return load_config(None, [
        "model.backbone=tf_efficientnet_lite0", "model.pretrained=none", "data.input_size=32",
        "train.epochs=1", "train.m_per_class=2", "model.embedding_dim=8", "train.device=cpu",
        "train.export_onnx=false",
        *overrides,
    ])  # fmt: skip


def test_run_directory_holds_everything(tiny_run):
    for name in (
        "model.pt",
        "last.pt",
        "config.yaml",
        "train_log.csv",
        "train_summary.json",
    ):
        assert (tiny_run / name).is_file(), name
    rows = list(csv.DictReader(open(tiny_run / "train_log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and "val_loss" in rows[0]
    loaded = load_checkpoint(tiny_run)
    assert loaded.classes == ["JGS001", "JGS002", "JGS003", "JGS004"]
    assert load_config(tiny_run / "config.yaml") == loaded.config  # resolved config beside outputs


def test_resume_continues_where_it_stopped(tiny_cfg, tiny_data, tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cfg = load_config(tiny_run / "config.yaml", ["train.epochs=3"])
    logs = []
    result = train(cfg, read_dataset(tiny_data), run, resume=True, progress=False, log=logs.append)
    assert any("resuming after epoch 2" in line for line in logs)
    assert [r["epoch"] for r in csv.DictReader(open(run / "train_log.csv"))] == ["1", "2", "3"]
    assert result.epochs_run == 3


def test_resume_without_last_checkpoint_is_an_error(tiny_cfg, tiny_data, tmp_path):
    with pytest.raises(ReIDError, match="Cannot resume"):
        train(tiny_cfg, read_dataset(tiny_data), tmp_path, resume=True, progress=False)


def test_training_goes_on_past_a_bad_image(tiny_cfg, tiny_data, tmp_path):
    samples = read_dataset(tiny_data)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    cfg = _scratch_cfg("train.batch_size=8")
    logs = []
    result = train(
        cfg,
        [*samples, ImageRecord(path=bad, individual="JGS001")],
        tmp_path / "run",
        progress=False,
        log=logs.append,
    )
    assert result.num_skipped == 1
    assert any(f"{len(samples)} images loaded, 1 skipped" in s and "broken.jpg" in s for s in logs)


def test_evaluate_writes_metrics_and_plots(tiny_run, tiny_data, tmp_path):
    samples = read_dataset(tiny_data)
    m = evaluate_run(tiny_run, samples, tmp_path / "eval", progress=False)
    for name in (
        "metrics.json",
        "metrics.md",
        "confusion.csv",
        "confusion.png",
        "per_individual.csv",
        "predictions.csv",
    ):
        assert (tmp_path / "eval" / name).is_file(), name
    assert m["num_images"] == len(samples) and 0 <= m["accuracy"] <= 1
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["accuracy"] == m["accuracy"]
    assert sum(map(sum, m["confusion"])) == len(samples)
    assert set(m["by_condition"]) <= {"morning", "afternoon", "evening"}
    # the predictions agree with a direct embedding of the same files: one path file -> vector
    emb = Embedder.from_run(tiny_run, "cpu")
    direct = emb.embed_paths([s.path for s in samples], progress=False)
    pred = [emb.classes[k] for k in direct.logits.argmax(1)]
    rows = list(csv.DictReader(open(tmp_path / "eval" / "predictions.csv")))
    assert [r["predicted"] for r in rows] == pred


def test_condition_protocol_gives_one_row_per_condition_plus_mixed(tiny_cfg, tiny_data, tmp_path):
    samples = read_dataset(tiny_data)
    dates = sorted({s.date for s in samples})
    cfg = _scratch_cfg("train.batch_size=4", "data.val_fraction=0")
    result = run_condition_protocol(
        cfg,
        [s for s in samples if s.date == dates[0]],
        [s for s in samples if s.date == dates[1]],
        tmp_path,
        progress=False,
        log=lambda _: None,
    )
    models = [r["model"] for r in result["rows"]]
    assert models[-1] == "mixed" and set(models[:-1]) <= {"morning", "afternoon", "evening"}
    assert (tmp_path / "conditions.md").is_file() and "| mixed |" in result["table"]
    n_test = {r["model"]: r["test_images"] for r in result["rows"]}
    assert n_test["mixed"] == sum(v for k, v in n_test.items() if k != "mixed")


def test_hold_out_individuals_is_seeded_and_bounded():
    from reid.training.data import hold_out_individuals

    samples = [
        ImageRecord(path=f"{i}_{k}.jpg", individual=f"ind{i:02d}")
        for i in range(10)
        for k in range(3)
    ]
    kept, held = hold_out_individuals(samples, 0.2, seed=0)
    assert len(held) == 2 and held == sorted(held)
    assert held == hold_out_individuals(samples, 0.2, seed=0)[1]
    assert not {s.individual for s in kept} & set(held) and len(kept) == 24
    assert hold_out_individuals(samples, 0.0, seed=0) == (samples, [])
    assert len(hold_out_individuals(samples[:9], 0.1, seed=0)[1]) == 1  # 3 individuals: keep 2
    with pytest.raises(ReIDError, match="too few individuals"):
        hold_out_individuals(samples[:6], 0.5, seed=0)


def test_held_out_individuals_are_not_trained_on(tiny_data, tmp_path):
    cfg = _scratch_cfg("train.batch_size=4", "data.holdout_individuals=0.25")
    result = train(cfg, read_dataset(tiny_data), tmp_path, progress=False, log=lambda _: None)
    assert len(result.holdout_individuals) == 2
    assert set(result.classes).isdisjoint(result.holdout_individuals) and len(result.classes) == 2
    assert load_checkpoint(tmp_path).extra["holdout_individuals"] == result.holdout_individuals


def test_resume_refuses_a_changed_config_or_dataset(tiny_cfg, tiny_data, tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    samples = read_dataset(tiny_data)
    cfg = load_config(tiny_run / "config.yaml", ["train.lr=0.01"])
    with pytest.raises(ReIDError, match="config differs in train.lr"):
        train(cfg, samples, run, resume=True, progress=False)
    cfg = load_config(tiny_run / "config.yaml")
    with pytest.raises(ReIDError, match="photos or their train/validation split differ"):
        train(cfg, samples[:-4], run, resume=True, progress=False)
    assert load_config(run / "config.yaml") == cfg  # the refused resumes changed nothing


def test_backbone_lr_scale_gives_the_backbone_its_own_rate(tiny_cfg):
    from dataclasses import replace

    from reid.features.model import build_model
    from reid.training.loop import _param_groups
    from reid.training.losses import build_loss

    model = build_model(tiny_cfg, 3, pretrained="none")
    loss_fn = build_loss(tiny_cfg.loss, 3, tiny_cfg.model.embedding_dim)
    groups = _param_groups(model, loss_fn, tiny_cfg)
    assert [g["lr"] for g in groups] == [tiny_cfg.train.lr, tiny_cfg.loss.lr]
    cfg = replace(tiny_cfg, train=replace(tiny_cfg.train, backbone_lr_scale=0.1))
    backbone, heads, loss = _param_groups(model, loss_fn, cfg)
    assert backbone["lr"] == pytest.approx(0.1 * cfg.train.lr) and heads["lr"] == cfg.train.lr
    n = sum(1 for _ in model.parameters())
    assert len(backbone["params"]) + len(heads["params"]) == n
    assert len(backbone["params"]) == sum(1 for _ in model.backbone.parameters())


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_bn_stats_keeps_the_pretrained_statistics_while_weights_learn(
    tiny_cfg, tiny_data, tmp_path, freeze
):
    from dataclasses import replace

    import torch

    from reid.features.checkpoint import load_checkpoint
    from reid.features.model import build_model
    from reid.io.datasets import read_dataset
    from reid.training.loop import train

    cfg = replace(tiny_cfg, train=replace(tiny_cfg.train, epochs=1, freeze_bn_stats=freeze))
    logs: list[str] = []
    train(cfg, read_dataset(tiny_data), tmp_path / "run", progress=False, log=logs.append)
    # tiny.yaml trains the backbone at 1e-3: too fast without per-batch re-normalisation
    assert any("warning: train.freeze_bn_stats" in m for m in logs) == freeze
    before = build_model(cfg, 1).backbone.state_dict()
    after = load_checkpoint(tmp_path / "run").model.backbone.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    weights = [k for k in before if k.endswith("weight")]
    assert stats and weights
    stats_moved = sum(not torch.equal(before[k], after[k]) for k in stats)
    assert any(not torch.equal(before[k], after[k]) for k in weights)  # it did train
    if freeze:
        assert stats_moved == 0
    else:
        assert stats_moved == len(stats)
    # the heads' BatchNorm (the embedding's BNNeck) is not the backbone's: it always learns
    head_bn = load_checkpoint(tmp_path / "run").model.embedding[1]
    assert not torch.equal(head_bn.running_mean, torch.zeros_like(head_bn.running_mean))


def test_a_run_saved_before_newer_config_keys_still_resumes(tiny_cfg, tiny_data, tmp_path):
    from dataclasses import replace

    import torch

    from reid.io.datasets import read_dataset
    from reid.training.loop import train

    samples = read_dataset(tiny_data)
    train(tiny_cfg, samples, tmp_path / "run", progress=False, log=lambda _: None)
    last = tmp_path / "run" / "last.pt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    for section, key in (("model", "whitening"), ("train", "freeze_bn_stats")):
        del saved["config"][section][key]  # as written by a version without these options
    torch.save(saved, last)
    cfg = replace(tiny_cfg, train=replace(tiny_cfg.train, epochs=tiny_cfg.train.epochs + 1))
    logs: list[str] = []
    result = train(cfg, samples, tmp_path / "run", resume=True, progress=False, log=logs.append)
    # the old config's missing keys took their defaults, so the resume went on from last.pt
    assert any(f"resuming after epoch {tiny_cfg.train.epochs}" in m for m in logs)
    assert result.epochs_run == cfg.train.epochs
    epochs = [r["epoch"] for r in csv.DictReader(open(tmp_path / "run" / "train_log.csv"))]
    assert epochs == [str(e) for e in range(1, cfg.train.epochs + 1)]


def test_a_diverging_loss_stops_training_and_keeps_the_last_good_model(
    tiny_cfg, tiny_data, tmp_path, monkeypatch
):
    import torch

    from reid.config import from_dict, to_dict
    from reid.training.loop import _Loop

    cfg = from_dict(to_dict(tiny_cfg))
    cfg.train.epochs = 3
    forward = _Loop._forward

    def nan_in_epoch_2(self, images, labels):
        losses, out = forward(self, images, labels)
        if self.epochs_seen >= 2:
            losses = {**losses, "loss": losses["loss"] * float("nan")}
        return losses, out

    def count_epochs(self, data, epoch):
        self.epochs_seen = epoch
        return train_epoch(self, data, epoch)

    train_epoch = _Loop.train_epoch
    monkeypatch.setattr(_Loop, "_forward", nan_in_epoch_2)
    monkeypatch.setattr(_Loop, "train_epoch", count_epochs)
    with pytest.raises(ReIDError, match="diverged.*epoch 2.*lower train.lr"):
        train(cfg, read_dataset(tiny_data), tmp_path / "run", progress=False, log=lambda _: None)
    loaded = load_checkpoint(tmp_path / "run")  # epoch 1's model, untouched by the NaN
    assert all(torch.isfinite(t).all() for t in loaded.model.state_dict().values())
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["epoch"] == 1
