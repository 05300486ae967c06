"""Model, offline weights, loss and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from reid.config import load_config
from reid.errors import ReIDError
from reid.features.backbone import build_backbone, convert_lite_state_dict, load_offline_state_dict
from reid.features.checkpoint import load_checkpoint, save_checkpoint
from reid.features.model import ReIDModel, ReIDOutput, build_model
from reid.training.losses import build_loss

# ImageNet classes 281-285 are tabby, tiger cat, Persian, Siamese and Egyptian cat
CAT_CLASSES = set(range(281, 286))


def test_offline_weights_load_strictly_and_see_a_cat():
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    # strict=True is load_state_dict's default: every tensor must map one-to-one
    model.load_state_dict(convert_lite_state_dict(load_offline_state_dict("lite0"), model))
    model.eval()
    cat = Image.fromarray(data.chelsea()).resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.array(cat)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        top5 = model((x - 0.5) / 0.5).topk(5).indices[0].tolist()
    assert CAT_CLASSES & set(top5), top5
    assert top5[0] in CAT_CLASSES


def test_offline_weights_refuse_a_backbone_they_do_not_fit():
    with pytest.raises(ReIDError, match="set model.backbone=tf_efficientnet_lite0"):
        build_backbone("tf_efficientnetv2_b0", "lite0")


def test_unreachable_hub_gives_one_sentence_with_alternatives(monkeypatch):
    import huggingface_hub.constants

    # What a machine without internet looks like, fast: the hub raises as it does offline. The
    # HF_HUB_OFFLINE variable alone would come too late (the hub reads it once, at import) and
    # the test would wait out the network timeouts.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ReIDError) as info:
        build_backbone("tf_efficientnetv2_b0", "timm")
    text = str(info.value)
    assert "model.pretrained=lite0" in text and "model.pretrained=none" in text
    assert "\n" not in text


def test_local_weights_file(tmp_path):
    src = build_backbone("tf_efficientnet_lite0", "lite0")
    path = tmp_path / "w.pth"
    torch.save({"state_dict": src.state_dict()}, path)
    again = build_backbone("tf_efficientnet_lite0", str(path))
    for (k, a), (_, b) in zip(src.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(ReIDError, match="does not fit backbone"):
        build_backbone("resnet18", str(path))
    with pytest.raises(ReIDError, match="neither a known weights name"):
        build_backbone("resnet18", str(tmp_path / "missing.pth"))


def test_one_forward_returns_both_outputs_in_every_mode(tiny_cfg):
    model = build_model(tiny_cfg, num_classes=5)
    x = torch.rand(4, 3, 64, 64)
    for mode in (model.train, model.eval):
        mode()
        out = model(x)
        assert isinstance(out, ReIDOutput)
        assert out.embeddings.shape == (4, 32) and out.logits.shape == (4, 5)
        assert torch.allclose(out.embeddings.norm(dim=1), torch.ones(4), atol=1e-5)


@pytest.mark.parametrize("metric", ["arcface", "subcenter_arcface", "triplet"])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(tiny_cfg, metric):
    torch.manual_seed(0)
    cfg = load_config(
        None,
        [
            "model.backbone=tf_efficientnet_lite0",
            "model.pretrained=none",
            "model.embedding_dim=16",
            f"loss.metric={metric}",
            "model.dropout=0",
        ],
    )
    model = build_model(cfg, num_classes=3)
    loss_fn = build_loss(cfg.loss, 3, 16)
    params = list(model.parameters()) + list(loss_fn.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    x, y = torch.rand(12, 3, 32, 32), torch.tensor([0, 1, 2] * 4)
    losses = []
    for _ in range(8):
        loss = loss_fn(model(x), y)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9, losses
    if metric != "triplet":  # the loss owns parameters (class centres) that the optimiser trains
        assert any(p.requires_grad for p in loss_fn.parameters())


def test_checkpoint_round_trip_gives_identical_embeddings(tiny_cfg, tmp_path):
    torch.manual_seed(1)
    model = build_model(tiny_cfg, num_classes=3).eval()
    with torch.no_grad():  # move BN statistics off their defaults so the test can tell
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
    classes = ["JGS001", "JGS002", "JGS003"]
    fp = save_checkpoint(tmp_path / "model.pt", model, tiny_cfg, classes)
    loaded = load_checkpoint(tmp_path)  # a run directory works as well as the file
    assert loaded.classes == classes and loaded.fingerprint == fp
    assert loaded.input_size == 64 and loaded.config == tiny_cfg
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), loaded.model(x)
    assert torch.equal(a.embeddings, b.embeddings) and torch.equal(a.logits, b.logits)
    assert torch.equal(loaded.model.mean, model.mean)


def test_damaged_or_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(ReIDError, match="No model checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ReIDError, match="cannot be read"):
        load_checkpoint(tmp_path)


def test_model_normalises_inside(tiny_cfg):
    model = build_model(tiny_cfg, num_classes=2)
    assert isinstance(model, ReIDModel)
    assert model.mean.flatten().tolist() == [0.5, 0.5, 0.5]  # lite0 was trained with mean=std=0.5


def test_per_photo_norm_makes_a_dark_photo_look_like_a_bright_one(tiny_cfg, tmp_path):
    from reid.config import from_dict, to_dict
    from reid.features.checkpoint import fingerprint

    cfg = from_dict(to_dict(tiny_cfg))
    cfg.model.photo_norm = "per_photo"
    torch.manual_seed(0)
    fixed = build_model(tiny_cfg, num_classes=3).eval()
    per_photo = build_model(cfg, num_classes=3).eval()
    per_photo.load_state_dict(fixed.state_dict() | {"per_photo": per_photo.per_photo})
    bright = torch.rand(2, 3, 64, 64) * 0.6 + 0.3
    dusk = bright * 0.25 + 0.02  # a quarter of the light, a little sensor floor
    with torch.no_grad():
        same = torch.cosine_similarity(per_photo(bright).embeddings, per_photo(dusk).embeddings)
        moved = torch.cosine_similarity(fixed(bright).embeddings, fixed(dusk).embeddings)
    assert same.min() > 0.999 and moved.max() < 0.99
    # the option is in the weights' fingerprint and survives the checkpoint (and the exported
    # copy: test_exported_copy_...)
    assert fingerprint(fixed) != fingerprint(per_photo)
    save_checkpoint(tmp_path / "model.pt", per_photo, cfg, ["a", "b", "c"])
    with torch.no_grad():
        assert torch.allclose(load_checkpoint(tmp_path).model(dusk).embeddings,
                              per_photo(dusk).embeddings, atol=1e-6)  # fmt: skip


def test_grid_pooling_keeps_where_a_pattern_is_and_survives_a_round_trip(tiny_cfg, tmp_path):
    from reid.config import from_dict, to_dict

    cfg = from_dict(to_dict(tiny_cfg))
    cfg.model.pooling = "grid2x2"
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=3).eval()
    x = torch.full((1, 3, 64, 64), 0.4)
    x[..., :32] = torch.rand(1, 3, 64, 32)  # spots on the left half, plain skin on the right
    swapped = torch.cat([x[..., 32:], x[..., :32]], dim=3)  # the same two halves, swapped
    with torch.no_grad():
        grid = model.features(torch.cat([x, swapped]))
        avg = model.backbone(model.normalise(torch.cat([x, swapped])))
        out = model(x)
    assert grid.shape == (2, 4 * model.backbone.num_features)
    assert out.embeddings.shape == (1, cfg.model.embedding_dim) and out.logits.shape == (1, 3)
    cos = torch.nn.functional.cosine_similarity
    # the global average sees the same content; the grid sees the pattern move, and moving its
    # cells back (left and right columns swapped) brings it closer again
    assert cos(grid[:1], grid[1:]).item() < cos(avg[:1], avg[1:]).item() - 0.05
    moved_back = grid[1:].view(1, -1, 2, 2).flip(-1).flatten(1)
    assert cos(grid[:1], moved_back).item() > cos(grid[:1], grid[1:]).item() + 0.05
    save_checkpoint(tmp_path / "model.pt", model, cfg, ["a", "b", "c"])
    loaded = load_checkpoint(tmp_path)
    assert loaded.config.model.pooling == "grid2x2"
    with torch.no_grad():
        assert torch.equal(loaded.model(x).embeddings, out.embeddings)
    with pytest.raises(ReIDError, match="model.pooling"):
        load_config(None, ["model.pooling=max"])


def test_grid_pooling_refuses_a_backbone_without_a_feature_map():
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64)
    model = ReIDModel(vit, 3, embedding_dim=8, pooling="grid2x2")
    with pytest.raises(ReIDError, match=r"grid2x2 needs a convolutional backbone.*pooling=avg"):
        model(torch.rand(1, 3, 64, 64))


def test_exported_copy_gives_the_same_embeddings_and_is_refused_when_stale(tiny_cfg, tmp_path):
    from reid.config import from_dict, to_dict
    from reid.features.checkpoint import export_run
    from reid.features.export import EXPORT_NAME, OnnxModel

    cfg = from_dict(to_dict(tiny_cfg))  # both options that change the graph, in one export
    cfg.model.photo_norm, cfg.model.pooling = "per_photo", "grid2x2"
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=3).eval()
    fp = save_checkpoint(tmp_path / "model.pt", model, cfg, ["a", "b", "c"])
    assert not isinstance(load_checkpoint(tmp_path, exported=True).model, OnnxModel)  # none yet
    assert export_run(tmp_path) == tmp_path / EXPORT_NAME
    fast = load_checkpoint(tmp_path, exported=True)
    assert isinstance(fast.model, OnnxModel) and fast.fingerprint == fp
    assert isinstance(load_checkpoint(tmp_path).model, ReIDModel)  # only when asked for
    x = torch.rand(5, 3, 64, 64)  # another batch size than the export's example
    x[:2] = x[:2] * 0.25 + 0.02  # two dusk photos: per_photo normalisation is in the graph
    with torch.no_grad():
        a = model(x)
    embeddings, logits = fast.model(x)
    assert embeddings.shape == (5, 32) and logits.shape == (5, 3)
    assert torch.allclose(embeddings, a.embeddings, atol=1e-5)
    assert torch.allclose(logits, a.logits, atol=1e-4)
    # a checkpoint retrained without refreshing model.onnx: the stale copy is not used
    save_checkpoint(tmp_path / "model.pt", build_model(cfg, num_classes=3), cfg, ["a", "b", "c"])
    assert isinstance(load_checkpoint(tmp_path, exported=True).model, ReIDModel)
    # nor a damaged one
    (tmp_path / EXPORT_NAME).write_bytes(b"not an onnx file")
    assert isinstance(load_checkpoint(tmp_path, exported=True).model, ReIDModel)
