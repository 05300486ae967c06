"""Where is the identity in nyala photos? Frozen features and heads trained on them, on LOIO's
never-trained gallery split.

The LOIO benchmark (``python -m benchmarks.loio``) found that fine-tuning on the trained nyala
individuals does not beat the frozen backbone on individuals it never saw. This probe asks why,
without a long training run: it embeds every photo once with the frozen pretrained backbone, then
scores, on the same split as LOIO's fast mode (`reid.evaluation.loio.score_vectors`):

- pooling variants of the frozen feature map (average = LOIO's "frozen backbone" baseline, GeM,
  max, a 2x2 grid) at each input size;
- heads trained on the frozen features (average and grid) of the trained individuals only (a
  linear projection to 128 dimensions with a triplet, ArcFace or supervised-contrastive loss):
  if identity that carries over to new animals were in these features, some head would find it;
- a sheet of failed queries (query | its top match | its true individual, with the rank at which
  the truth came), written as a PNG: look at it before tuning anything. It shows the data set's
  photos, so it goes to the work folder (``--sheet`` elsewhere), never into benchmarks/results:
  the shared data sets are not ours to redistribute.

    python -m benchmarks.feature_probe                    # nyala, 224 and 320 px, ~6 min on CPU
    python -m benchmarks.feature_probe --data att_faces --sizes 160
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from benchmarks import datasets
from benchmarks.common import write_results
from reid.config import Config, load_config
from reid.evaluation.loio import LoioSettings, fast_split, score_vectors, split_enroll_query
from reid.features.checkpoint import LoadedModel
from reid.features.embedder import Embedder
from reid.features.model import build_model
from reid.io.datasets import ImageRecord

POOLS = ("avg", "gem", "max", "grid2x2")
METRICS = ("auroc", "rank1", "rank5", "map", "pooled_tpr_at_fmr_5")


class _Pools(nn.Module):
    """Frozen backbone -> its final feature map pooled four ways, concatenated: (N, 4F)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.model.backbone.forward_features(self.model.normalise(x)).float()  # (N,F,h,w)
        gem = fmap.clamp_min(1e-6).pow(3).mean((2, 3)).pow(1 / 3)
        grid = F.adaptive_avg_pool2d(fmap, 2)  # (N, F, 2, 2): each cell normalised alone
        grid = F.normalize(grid.flatten(2), dim=1).flatten(1) / 2
        v = torch.cat([fmap.mean((2, 3)), gem, fmap.amax((2, 3)), grid], 1)
        return v, v[:, :0]


def frozen_pools(cfg: Config, paths: list[Path]) -> dict[str, np.ndarray]:
    """Pooling name -> (N, D) frozen features of ``paths`` at ``cfg.data.input_size``."""
    model = build_model(cfg, 1).eval()
    loaded = LoadedModel(_Pools(model).eval(), ["-"], cfg, "probe", Path("."), {})
    res = Embedder(loaded).embed_paths(paths, desc=f"frozen {cfg.data.input_size}px")
    if res.failures:
        raise SystemExit(f"{len(res.failures)} photos unreadable (first: {res.failures[0]}).")
    nf = model.backbone.num_features
    widths = {"avg": nf, "gem": nf, "max": nf, "grid2x2": 4 * nf}
    out, start = {}, 0
    for name in POOLS:
        out[name] = res.embeddings[:, start : start + widths[name]]
        start += widths[name]
    return out


def train_head(
    feats: np.ndarray, labels: list[str], loss: str, dim: int = 128, epochs: int = 60, seed: int = 0
) -> np.ndarray:
    """A linear projection (F -> dim) trained on ``feats`` (N, F) of the trained individuals;
    returns the projection matrix (F, dim)."""
    from pytorch_metric_learning import distances, losses, miners

    torch.manual_seed(seed)
    classes = {c: n for n, c in enumerate(sorted(set(labels)))}
    x = F.normalize(torch.from_numpy(feats).float(), dim=1)
    y = torch.tensor([classes[c] for c in labels])
    proj = nn.Linear(x.shape[1], dim, bias=False)
    cos = distances.CosineSimilarity()
    miner = None
    if loss == "triplet":
        criterion = losses.TripletMarginLoss(margin=0.2, distance=cos)
        miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard", distance=cos)
    elif loss == "arcface":
        criterion = losses.ArcFaceLoss(len(classes), dim, margin=10.0, scale=30.0)
    else:
        criterion = losses.SupConLoss(temperature=0.1)
    opt = torch.optim.Adam([*proj.parameters(), *criterion.parameters()], lr=1e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            e = F.normalize(proj(x[batch]), dim=1)
            pairs = miner(e, y[batch]) if miner is not None else None
            loss_value = (
                criterion(e, y[batch], pairs) if pairs is not None else criterion(e, y[batch])
            )
            opt.zero_grad()
            loss_value.backward()
            opt.step()
    return proj.weight.detach().numpy().T


def failure_sheet(
    samples: list[ImageRecord], vectors: np.ndarray, label_col: str, left_out: list[str],
    settings: LoioSettings, path: Path, n: int = 6,
) -> Path:  # fmt: skip
    """PNG: ``n`` wrongly answered known queries of the never-trained gallery, each as query |
    top match | an enrolled photo of its true identity (with the rank the truth came at)."""
    rng = np.random.default_rng(settings.seed)
    enroll, query = split_enroll_query(samples, settings.enroll_fraction)
    ids = set(left_out)
    g = np.array([i for i in enroll if samples[i].individual in ids])
    q = np.array([i for i in query if samples[i].individual in ids])
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
    label = np.array([s.get(label_col) for s in samples], dtype=object)
    sims = v[q] @ v[g].T
    top = sims.argmax(1)
    wrong = np.flatnonzero(label[g][top] != label[q])
    pick = rng.choice(wrong, min(n, len(wrong)), replace=False)
    cell_w, cell_h, pad = 320, 240, 8
    sheet = Image.new("RGB", (3 * (cell_w + pad), len(pick) * (cell_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, j in enumerate(pick):
        truth_cols = np.flatnonzero(label[g] == label[q[j]])
        best_truth = truth_cols[sims[j, truth_cols].argmax()]
        rank = int((sims[j] > sims[j, best_truth]).sum()) + 1
        cells = [
            (q[j], f"query {label[q[j]]}"),
            (g[top[j]], f"top match {label[g[top[j]]]} ({sims[j, top[j]]:.2f})"),
            (g[best_truth], f"truth {label[q[j]]} ({sims[j, best_truth]:.2f}), rank {rank}"),
        ]
        for col, (i, text) in enumerate(cells):
            with Image.open(samples[i].path) as im:
                im = im.convert("RGB")
                im.thumbnail((cell_w, cell_h - 18))
            x, y = col * (cell_w + pad), row * (cell_h + pad)
            sheet.paste(im, (x, y + 18))
            draw.text((x + 2, y + 2), text, fill=(180, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="nyala", help="nyala | att_faces | synthetic | PATH")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 320])
    ap.add_argument("--config", default="field", help="installed config name or YAML path")
    ap.add_argument("--set", action="append", default=[], help="config override key=value")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="results name (default probe_DATA)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/reid_bench/probe"))
    ap.add_argument(
        "--sheet",
        type=Path,
        default=None,
        help="failed-queries PNG (default WORK/failed_queries_DATA.png, outside the repository)",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    samples, label_col = datasets.load(args.data, args.work, seed=args.seed)
    settings = LoioSettings(seed=args.seed)
    paths = [s.path for s in samples]
    left_out, _ = fast_split(sorted({s.individual for s in samples}), settings,
                              random.Random(args.seed))  # fmt: skip
    trained = [i for i, s in enumerate(samples) if s.individual not in set(left_out)]
    rows: list[dict] = []
    first_avg = None
    for size in args.sizes:
        cfg = load_config(args.config, [f"data.input_size={size}", *args.set])
        pools = frozen_pools(cfg, paths)
        first_avg = pools["avg"] if first_avg is None else first_avg
        vectors = {f"frozen {name}, {size} px": v for name, v in pools.items()}
        if size == args.sizes[0]:  # heads learn from the trained individuals' frozen features
            labels = [samples[i].get(label_col) for i in trained]
            for pool in ("avg", "grid2x2"):
                for loss in ("triplet", "arcface", "supcon"):
                    w = train_head(pools[pool][trained], labels, loss, seed=args.seed)
                    vectors[f"frozen {pool}, {size} px + linear {loss} head"] = pools[pool] @ w
        result = score_vectors(samples, vectors, label_col, settings)
        for name, s in result["summary"].items():
            rows.append({"method": name, **{m: s.get(m) for m in METRICS}})
            print(name, {m: s.get(m) for m in METRICS}, flush=True)
    name = args.name or f"probe_{Path(args.data).name}"
    sheet = args.sheet or args.work / f"failed_queries_{Path(args.data).name}.png"
    failure_sheet(samples, first_avg, label_col, left_out, settings, sheet)
    n_left = len(left_out)
    md = [
        f"Frozen `{cfg.model.backbone}` ({cfg.model.pretrained} weights) features on "
        f"{Path(args.data).name}, scored on LOIO fast mode's never-trained gallery "
        f"({n_left} individuals never trained on, {len(samples)} photos; seed {args.seed}). "
        "`frozen avg` is LOIO's frozen-backbone baseline; the heads are trained on the other "
        f"{len({samples[i].individual for i in trained})} individuals' frozen features.",
        "",
        "| method | AUROC | rank-1 | rank-5 | mAP | TPR@5% |",
        "| --- | --- | --- | --- | --- | --- |",
        *[
            f"| {r['method']} | {r['auroc']:.3f} | {r['rank1']:.3f} | {r['rank5']:.3f} | "
            f"{r['map']:.3f} | {r['pooled_tpr_at_fmr_5']:.3f} |"
            for r in rows
        ],
        "",
        f"Failed queries of `frozen avg, {args.sizes[0]} px` (query | top match | truth) are "
        f"drawn into `{sheet}` by the command below; not kept here, as they show the data "
        "set's photos.",
    ]
    payload = {"rows": rows, "args": {k: str(v) for k, v in vars(args).items()},
               "wall_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    write_results(name, payload, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
