from pathlib import Path

import pytest

from reid.config import Config, ConfigError, from_dict, load_config, save_config, to_dict

REPO = Path(__file__).resolve().parents[1]


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(None, ["train.lr=0.005", "model.backbone=resnet18", "augment.rotate_p=0"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg
    assert again.train.lr == 0.005 and again.model.backbone == "resnet18"
    assert again.augment.rotate_p == 0.0 and isinstance(again.augment.rotate_p, float)
    assert from_dict(to_dict(cfg)) == cfg


def test_defaults_are_the_papers_settings():
    cfg = load_config(REPO / "configs" / "paper.yaml")
    assert cfg == Config()  # the YAML mirrors the defaults in code
    assert cfg.model.dropout == 0.3 and cfg.data.val_fraction == 0.2
    assert cfg.train.early_stop_patience == 5 and cfg.train.early_stop_min_delta == 0.001


@pytest.mark.parametrize(
    "text, key",
    [
        ("train:\n  lrr: 0.1\n", "train.lrr"),
        ("trian:\n  lr: 0.1\n", "trian"),
        ("model:\n  head:\n    size: 3\n", "model.head"),
    ],
)
def test_unknown_key_in_yaml_is_named(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"Unknown config key '{key}'"):
        load_config(path)


def test_bad_override_type_and_value_are_named():
    with pytest.raises(ConfigError, match="train.epochs.*expects int"):
        load_config(None, ["train.epochs=many"])
    with pytest.raises(ConfigError, match="loss.metric"):
        load_config(None, ["loss.metric=contrastive"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["train.lr"])
    with pytest.raises(ConfigError, match="Unknown config key 'train.learning_rate'"):
        load_config(None, ["train.learning_rate=1"])


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_installed_configs_are_found_by_name_and_match_their_files():
    from reid.config import config_names, resolve_config_path

    assert {"paper", "demo", "nyala"} <= set(config_names())
    assert resolve_config_path("paper").name == "paper.yaml"
    by_name = load_config("paper")
    by_path = load_config(resolve_config_path("paper"))
    assert by_name == by_path
    with pytest.raises(ConfigError, match="installed config"):
        load_config("no_such_config")


def test_scientific_notation_is_a_float(tmp_path):
    # YAML 1.1 reads 3e-4 (no decimal point) as a string; the config accepts it as a number
    assert load_config(None, ["train.lr=3e-4"]).train.lr == 3e-4
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  lr: 1e-3\n")
    assert load_config(path).loss.lr == 1e-3


def test_batch_must_hold_whole_groups_per_individual():
    with pytest.raises(ConfigError, match="multiple of train.m_per_class"):
        load_config(None, ["train.batch_size=6", "train.m_per_class=4"])


def test_every_shipped_config_loads_and_field_adds_exposure_robustness():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_config(path)  # raises on an unknown key or a bad value
    field, demo = (
        load_config(REPO / "configs" / "field.yaml"),
        load_config(REPO / "configs" / "demo.yaml"),
    )
    assert field.model.photo_norm == "per_photo" and demo.model.photo_norm == "none"
    assert field.augment.gamma_p > 0 and field.model.backbone == demo.model.backbone


def test_photo_norm_must_be_known():
    with pytest.raises(ConfigError, match="model.photo_norm"):
        load_config(None, ["model.photo_norm=auto"])


# the command of benchmarks/results/loio_nyala_fast_320.md, before configs/nyala.yaml named it
NYALA_320_RECIPE = [
    "data.input_size=320", "train.epochs=3", "train.lr=1e-4", "train.backbone_lr_scale=0.2",
    "loss.lr=1e-4", "train.freeze_bn_stats=true", "train.head_init=whitening",
    "model.pooling=grid2x2", "model.whitening=learned",
]  # fmt: skip


def test_nyala_config_is_the_field_config_with_the_nyala_recipe():
    nyala = load_config("nyala")
    assert nyala == load_config("field", NYALA_320_RECIPE)
    assert nyala != load_config("field")  # the recipe changes something
    assert nyala.data.input_size == 320 and nyala.train.backbone_lr_scale == 0.2
