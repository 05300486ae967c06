"""Leave-one-individual-out benchmark: fold construction, scoring, and both modes end to end."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from reid.config import from_dict, to_dict
from reid.errors import ReIDError
from reid.evaluation.loio import (
    LoioSettings,
    markdown,
    paired_bootstrap_ci,
    plot_roc,
    run_loio,
    score_vectors,
    split_enroll_query,
)
from reid.evaluation.openset_scoring import Accumulator, EvalSet, Method, score_fold
from reid.features.checkpoint import load_checkpoint, read_classes
from reid.io.datasets import ImageRecord, read_dataset


def _samples(n_ind: int, n_sightings: int, per_sighting: int = 1) -> list[ImageRecord]:
    out = []
    for i in range(n_ind):
        for s in range(n_sightings):
            for f in range(per_sighting):
                out.append(
                    ImageRecord(
                        path=Path(f"/x/{i}_{s}_{f}.jpg"),
                        individual=f"ind{i}",
                        date=f"2025-01-{10 - s:02d}",  # later sightings listed first
                        sighting=f"s{s}",
                        condition=("morning", "evening")[f % 2],
                    )
                )
    return out


def test_split_enroll_query_enrolls_the_earliest_sightings_whole():
    samples = _samples(3, 4, per_sighting=2) + [
        ImageRecord(Path("/x/lone.jpg"), "lone", sighting="a")
    ]
    enroll, query = split_enroll_query(samples, 0.5)
    assert sorted(enroll + query) == list(range(len(samples)))
    for i in enroll:  # dates 2025-01-07 and -08 are the two earliest of each individual
        assert samples[i].individual == "lone" or samples[i].date in ("2025-01-07", "2025-01-08")
    by_group = defaultdict(set)
    for side, idx in (("e", enroll), ("q", query)):
        for i in idx:
            by_group[samples[i].group].add(side)
    assert all(len(v) == 1 for v in by_group.values())  # a sighting is never split
    assert len(samples) - 1 in enroll  # a one-sighting individual is enrolled, never queried


def _score(vectors: np.ndarray, samples: list[ImageRecord], k: str, target_fmr: float = 0.05):
    enroll, query = split_enroll_query(samples, 0.5)
    ev = EvalSet(samples, "individual", enroll, query)
    fold = ev.fold(k, sorted({s.individual for s in samples}))
    acc = Accumulator()
    score_fold(Method("m", "similarity", vectors), fold, ev, acc, target_fmr=target_fmr)
    return acc.per_fold["m"][0], acc.pooled["m"][0]


def test_a_perfect_embedding_scores_perfectly_and_a_random_one_does_not():
    samples = _samples(8, 4, per_sighting=2)
    ind = np.array([int(s.individual[3:]) for s in samples])
    rng = np.random.default_rng(0)
    good = np.eye(8, 16)[ind] + 0.05 * rng.normal(size=(len(samples), 16))
    good /= np.linalg.norm(good, axis=1, keepdims=True)
    row, (scores, known) = _score(good.astype(np.float32), samples, "ind3")
    assert row["auroc"] == 1.0 and row["rank1"] == 1.0
    # known photos score ~1, far above the calibrated threshold; never-seen ones score like the
    # gallery's own impostors, so about target_fmr of them may pass (8 photos here)
    assert row["baks"] == 1.0 and row["baus"] >= 0.75
    assert known.sum() == 7 * 4 and (~known).sum() == 8  # others' later photos; all of ind3
    assert set(row["by_condition"]) == {"morning", "evening"}
    bad = rng.normal(size=(len(samples), 16)).astype(np.float32)
    bad /= np.linalg.norm(bad, axis=1, keepdims=True)
    row, _ = _score(bad, samples, "ind3")
    assert row["rank1"] < 0.6 and row["auroc"] < 0.9


def _good_and_random(n_ind: int, seed: int) -> tuple[list[ImageRecord], np.ndarray, np.ndarray]:
    """Photos of ``n_ind`` individuals; vectors that separate them; random vectors."""
    samples = _samples(n_ind, 4, per_sighting=2)
    ind = np.array([int(s.individual[3:]) for s in samples])
    rng = np.random.default_rng(seed)
    good = np.eye(n_ind, 2 * n_ind)[ind] + 0.05 * rng.normal(size=(len(samples), 2 * n_ind))
    return samples, good, rng.normal(size=(len(samples), 2 * n_ind))


def test_score_vectors_scores_outside_embeddings():
    samples, good, bad = _good_and_random(12, seed=1)
    out = score_vectors(samples, {"good": good, "random": bad}, "individual")
    summary = out["summary"]
    assert summary["good"]["rank1"] == 1.0 and summary["good"]["auroc"] == 1.0
    assert summary["random"]["rank1"] < 0.5 and summary["random"]["auroc"] < 0.9
    with pytest.raises(ReIDError, match="one row per photo"):
        score_vectors(samples, {"short": good[:-1]}, "individual")
    with pytest.raises(ReIDError, match="at least 3"):
        score_vectors(_samples(4, 4), {"x": np.ones((16, 2))}, "individual")


def test_methods_are_paired_with_the_frozen_backbone_per_query_and_per_fold():
    samples, good, bad = _good_and_random(24, seed=2)
    out = score_vectors(
        samples, {"frozen backbone": bad, "good": good, "same": bad.copy()}, "individual"
    )
    assert set(out["paired"]) == {"good", "same"}  # the reference is not paired with itself
    same, better = out["paired"]["same"], out["paired"]["good"]
    assert same["rank1_diff"] == 0 and same["rank1_ci95"] == [0, 0] and same["auroc_diff"] == 0
    gap = out["summary"]["good"]["rank1"] - out["summary"]["frozen backbone"]["rank1"]
    assert better["rank1_diff"] == pytest.approx(gap, abs=0.02)  # per query vs per fold mean
    assert 0 < better["rank1_ci95"][0] < better["rank1_diff"] < better["rank1_ci95"][1]
    assert better["auroc_ci95"][0] > 0 and better["num_folds"] == 12
    assert better["num_query_animals"] == 12  # the never-trained individuals, queried
    md = markdown({**_result_shell(), "scenarios": {"never-trained gallery": out}}, "t")
    assert "| good | +" in md and "interval excludes 0" in md
    assert "| same | +0.000 | +0.000 to +0.000 |" in md
    # without the reference there is nothing to pair with
    assert score_vectors(samples, {"good": good}, "individual")["paired"] == {}


def _result_shell() -> dict:
    return {
        "settings": vars(LoioSettings()), "mode": "fast", "num_individuals": 24, "folds": [],
        "num_enrolled": 0, "num_query": 0, "train_seconds": {}, "seconds": 0,
    }  # fmt: skip


def test_paired_bootstrap_resamples_whole_clusters():
    # one animal's photos all differ by +1, the other nine's by 0: resampling animals, the
    # interval is wide (0 to well above the mean); resampling photos would make it narrow
    diffs = np.r_[np.ones(10), np.zeros(90)]
    animals = np.r_[np.zeros(10), np.repeat(np.arange(1, 10), 10)]
    lo, hi = paired_bootstrap_ci(diffs, animals)
    assert lo == 0 and hi >= 0.2
    assert paired_bootstrap_ci(diffs, animals) == [lo, hi]  # seeded
    assert paired_bootstrap_ci(np.full(5, 0.3), range(5)) == [0.3, 0.3]
    assert paired_bootstrap_ci(np.ones(4), [7] * 4) is None  # one cluster: no interval


def test_pooled_tpr_resolves_rates_one_fold_cannot():
    from reid.evaluation.openset_scoring import _pooled_tpr

    # 10 folds of 10 unknowns each (scores 0..0.99) and the same 100 knowns (0.5..1.49):
    # one fold allows no false match at 1 % or 5 %; 100 pooled unknowns allow 1 and 5
    knowns = np.linspace(0.5, 1.49, 100)
    parts = [
        (np.r_[knowns, np.arange(10) / 100 + f / 10], np.r_[np.ones(100, bool), np.zeros(10, bool)])
        for f in range(10)
    ]
    out = _pooled_tpr(parts)
    # 1 %: the threshold sits just above the 2nd-highest unknown (0.98): knowns >= 0.99 pass
    assert out["pooled_tpr_at_fmr_1"] == pytest.approx(np.mean(knowns > 0.98))
    assert out["pooled_tpr_at_fmr_5"] == pytest.approx(np.mean(knowns > 0.94))
    assert out["pooled_tpr_at_fmr_5"] > out["pooled_tpr_at_fmr_1"]


@pytest.fixture(scope="module")
def loio_manifest(tmp_path_factory) -> Path:
    from reid.synthetic.salamanders import synthesize

    out = tmp_path_factory.mktemp("loio")
    return synthesize(out, 6, 6, seed=5, size=64, num_dates=3, progress=False)


@pytest.fixture(scope="module")
def loio_data(loio_manifest) -> list[ImageRecord]:
    return read_dataset(loio_manifest)


def _quick(cfg):
    cfg = from_dict(to_dict(cfg))
    cfg.train.epochs = 1
    return cfg


def test_fast_mode_never_trains_on_the_individuals_left_out(tiny_cfg, loio_data, tmp_path):
    settings = LoioSettings(mode="fast", test_fraction=0.5)
    result = run_loio(loio_data, _quick(tiny_cfg), settings, tmp_path, log=lambda _: None)
    trained, _ = read_classes(tmp_path / "ours")
    assert len(trained) == 3 and not set(trained) & set(result["folds"])
    assert len(result["folds"]) == 3
    trained_gallery = result["scenarios"]["trained gallery"]
    assert set(trained_gallery["summary"]) == {
        "frozen backbone", "classifier features", "ours", "ours softmax", "classifier softmax"
    }  # fmt: skip
    # softmax needs the gallery to be the classifier's classes: not for never-trained animals
    assert set(result["scenarios"]["never-trained gallery"]["summary"]) == {
        "frozen backbone", "classifier features", "ours"
    }  # fmt: skip
    for sc in result["scenarios"].values():
        for name, s in sc["summary"].items():
            assert s["folds"] == 3, name
            assert 0.0 <= s["auroc"] <= 1.0 and 0.0 <= s["rank1"] <= 1.0
        assert set(sc["by_condition"]["ours"]) == {"morning", "afternoon", "evening"}
    png = plot_roc(result, tmp_path / "roc.png", "t")
    assert png.stat().st_size > 5000
    md = markdown(result, "t")
    assert "### trained gallery" in md and "### never-trained gallery" in md
    # outside vectors are scored on the same split: the same individuals k
    rng = np.random.default_rng(0)
    same = score_vectors(loio_data, {"x": rng.normal(size=(len(loio_data), 4))}, "individual")
    assert [r["k"] for r in same["per_fold"]["x"]] == result["folds"]


def test_fast_mode_can_train_on_all_photos_and_then_scores_only_never_trained(
    tiny_cfg, loio_data, tmp_path
):
    import json

    settings = LoioSettings(
        mode="fast", test_fraction=0.5, train_photos="all", classifier_baseline=False
    )
    result = run_loio(loio_data, _quick(tiny_cfg), settings, tmp_path, log=lambda _: None)
    trained, _ = read_classes(tmp_path / "ours")
    summary = json.loads((tmp_path / "ours" / "train_summary.json").read_text())
    # every photo of the trained individuals, the later ones too, and none of the others
    assert summary["num_train"] + summary["num_val"] == sum(
        s.individual in trained for s in loio_data
    )
    assert set(result["scenarios"]) == {"never-trained gallery"}
    # the frozen backbone is kept, the classifier alone is not trained
    assert set(result["scenarios"]["never-trained gallery"]["summary"]) == {
        "frozen backbone",
        "ours",
    }
    assert not (tmp_path / "classifier").exists()
    assert "only the never-trained gallery is scored" in markdown(result, "t")
    with pytest.raises(ReIDError, match="train photos"):
        run_loio(loio_data, tiny_cfg, LoioSettings(train_photos="most"), tmp_path)


def test_retrain_mode_retrains_without_k_and_scores_softmax(tiny_cfg, loio_data, tmp_path):
    settings = LoioSettings(mode="retrain", folds=1, baselines=False)
    result = run_loio(loio_data, _quick(tiny_cfg), settings, tmp_path, log=lambda _: None)
    (k,) = result["folds"]
    trained, _ = read_classes(tmp_path / f"fold_{k}" / "ours")
    assert k not in trained and len(trained) == 5
    assert set(result["scenarios"]) == {"trained gallery"}
    summary = result["scenarios"]["trained gallery"]["summary"]
    assert set(summary) == {"ours", "ours softmax"}
    softmax = summary["ours softmax"]
    assert "auroc" in softmax and "map" not in softmax  # softmax has no retrieval ranking


def test_bad_mode_is_named(tiny_cfg, loio_data, tmp_path):
    from reid.errors import ReIDError

    with pytest.raises(ReIDError, match="mode 'slow'"):
        run_loio(loio_data, tiny_cfg, LoioSettings(mode="slow"), tmp_path)


def test_cli_benchmark_loio_writes_tables_and_roc(loio_manifest, tmp_path):
    from typer.testing import CliRunner

    from reid.cli.main import app

    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    args = ["benchmark", "loio", str(loio_manifest), "--out", str(tmp_path / "o"), "--config",
            str(tiny), "--set", "train.epochs=1", "--no-baselines", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| ours |" in result.output
    for name in ("loio.json", "loio.md", "loio_roc.png"):
        assert (tmp_path / "o" / name).stat().st_size > 100
    bad = CliRunner().invoke(app, [*args[:-1], "--mode", "slow"])
    assert bad.exit_code == 1 and "mode 'slow' is unknown" in bad.output


def test_with_learned_whitening_the_frozen_baseline_is_whitened_on_trained_animals_only(
    tiny_cfg, loio_data, tmp_path, monkeypatch
):
    import reid.features.whiten

    fitted: list[set] = []
    real_fit = reid.features.whiten.fit_whitening

    def spy(features, labels, dim, shrinkage=0.1):
        fitted.append(set(labels))
        return real_fit(features, labels, dim, shrinkage)

    monkeypatch.setattr(reid.features.whiten, "fit_whitening", spy)
    cfg = _quick(tiny_cfg)
    cfg.model.whitening = "learned"
    settings = LoioSettings(
        mode="fast", test_fraction=0.5, train_photos="all", classifier_baseline=False
    )
    result = run_loio(loio_data, cfg, settings, tmp_path, log=lambda _: None)
    trained, _ = read_classes(tmp_path / "ours")
    summary = result["scenarios"]["never-trained gallery"]["summary"]
    assert set(summary) == {"frozen backbone", "frozen + whitening", "ours"}
    # once for the baseline, once at the end of training ours: never on a left-out animal
    assert len(fitted) == 2 and all(labels <= set(trained) for labels in fitted)
    assert set(result["folds"]).isdisjoint(trained)
    assert "whitening" in load_checkpoint(tmp_path / "ours").extra


def test_loio_options_are_the_settings_fields_and_bad_values_are_named():
    import argparse

    from reid.evaluation.loio_settings import add_arguments, from_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert from_arguments(parser.parse_args([])) == LoioSettings()
    got = from_arguments(parser.parse_args(
        ["--mode", "retrain", "--folds", "3", "--no-classifier-baseline", "--target-fmr", "0.01"]
    ))  # fmt: skip
    assert got == LoioSettings(mode="retrain", folds=3, classifier_baseline=False, target_fmr=0.01)
    with pytest.raises(ReIDError, match="test fraction is 1.5"):
        LoioSettings(test_fraction=1.5)
    with pytest.raises(ReIDError, match="train photos 'most' is unknown"):
        LoioSettings(train_photos="most")


def test_local_methods_are_also_paired_with_the_best_global_method():
    from reid.evaluation.openset_scoring import REFERENCE, Accumulator

    acc = Accumulator()
    acc.global_methods |= {REFERENCE, "frozen + whitening"}
    summary = {REFERENCE: {"auroc": 0.57}, "frozen + whitening": {"auroc": 0.61},
               "fused": {"auroc": 0.9}}  # fmt: skip
    assert acc.best_global(summary) == "frozen + whitening"  # fused is not a global method
    assert Accumulator().best_global(summary) == REFERENCE


def test_every_loio_setting_is_a_reid_benchmark_loio_option():
    import inspect
    from dataclasses import fields

    from reid.cli.benchmark_cmds import loio_cmd
    from reid.evaluation.loio_settings import LoioSettings

    options = set(inspect.signature(loio_cmd).parameters)
    assert {f.name for f in fields(LoioSettings)} <= options
