"""The LOIO benchmark's report: Markdown tables and pooled ROC curves of a ``run_loio`` or
``score_vectors`` result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reid.evaluation.openset_scoring import HEADLINE

SCENARIO_TEXT = {
    "trained gallery": "the gallery holds the individuals the model trained on (their earliest "
    "sightings); known queries are their later photos, unknown queries every photo of the "
    "never-trained individual k (the paper's test). The threshold is calibrated with the other "
    "never-trained individuals as newcomers in fast mode, on the gallery itself (optimistic) in "
    "retrain mode",
    "never-trained gallery": "the gallery holds individuals the model never trained on, enrolled "
    "without retraining (how new animals are added in the field); known queries are their later "
    "photos, unknown queries every photo of k, another never-trained individual",
}


def plot_roc(result: dict[str, Any], path: Path, title: str) -> Path:
    """One panel per scenario, one ROC curve (known = positive) per method, pooled over folds,
    AUROC (mean over folds) in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = result["scenarios"]
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.5 * len(scenarios), 5), squeeze=False)
    for ax, (scenario, sc) in zip(axes[0], scenarios.items(), strict=True):
        for name, roc in sc["roc"].items():
            if roc is None:
                continue
            auc = sc["summary"][name].get("auroc")
            ax.plot(roc["fpr"], roc["tpr"], label=f"{name} (AUROC {auc:.3f})", lw=1.6)
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
        ax.set_xlabel("false-match rate (never-seen photos accepted)")
        ax.set_ylabel("known photos accepted")
        ax.set_xlim(0, 1), ax.set_ylim(0, 1.01)
        ax.set_title(f"{title}\n{scenario}", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _fmt(r: dict[str, Any], key: str) -> str:
    v = r.get(key)
    if v is None:
        return "-"
    std = r.get(f"{key}_std")
    return f"{v:.3f}" + (f" ± {std:.3f}" if std and key in ("auroc", "rank1") else "")


def _paired_lines(paired: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown: each method minus the reference, with its 95 % bootstrap interval."""
    if not paired:
        return []

    def diff(p: dict[str, Any], key: str) -> str:
        ci = p[f"{key}_ci95"]
        if p[f"{key}_diff"] is None:
            return "- | -"
        verdict = "" if ci is None or ci[0] <= 0 <= ci[1] else " (interval excludes 0)"
        return f"{p[f'{key}_diff']:+.3f} | " + (
            f"{ci[0]:+.3f} to {ci[1]:+.3f}{verdict}" if ci else "-"
        )

    ref = next(iter(paired.values()))
    lines = [
        "",
        f"Paired with `{ref['reference']}` (same queries, same folds): the difference and its "
        f"95 % bootstrap interval — rank-1 over {ref['num_known_queries']} known queries, "
        f"resampling their {ref['num_query_animals']} animals; AUROC over {ref['num_folds']} "
        "folds. An interval that holds 0 means this split cannot tell the two apart.",
        "",
        "| method | rank-1 difference | 95 % interval | AUROC difference | 95 % interval |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, p in paired.items():
        lines.append(f"| {name} | {diff(p, 'rank1')} | {diff(p, 'auroc')} |")
    return lines


def _scenario_lines(scenario: str, sc: dict[str, Any]) -> list[str]:
    """Markdown of one scenario: summary, paired differences, by-condition and per-fold
    tables."""
    lines = [
        "", f"### {scenario}", "", SCENARIO_TEXT[scenario] + ".", "",
        "| method | AUROC | TPR@1% | TPR@5% | OSCR | rank-1 | rank-5 | mAP | BAKS | BAUS | "
        "gmean |",
        "| --- | " + "--- | " * 10,
    ]  # fmt: skip
    for name, r in sc["summary"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(r, k) for k in HEADLINE) + " |")
    lines += _paired_lines(sc.get("paired", {}))
    lines += _paired_lines(sc.get("paired_best_global", {}))
    if sc["by_condition"].get("ours"):
        lines += ["", "By lighting condition of the query photo (`ours`; mixed = all):", "",
                  "| condition | AUROC | rank-1 | BAKS | BAUS |",
                  "| --- | --- | --- | --- | --- |"]  # fmt: skip
        by_condition = {**sc["by_condition"]["ours"], "mixed": sc["summary"]["ours"]}
        for c, r in by_condition.items():
            lines.append(f"| {c} | {_fmt(r, 'auroc')} | {_fmt(r, 'rank1')} | "
                         f"{_fmt(r, 'baks')} | {_fmt(r, 'baus')} |")  # fmt: skip
    rows = sc["per_fold"].get("ours", [])
    if rows:
        lines += ["", "Per fold (`ours`): the individual k left out, and how it fared.", "",
                  "| k | AUROC | rank-1 | k's photos flagged NEW | known accepted | "
                  "threshold |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in rows:
            lines.append(
                f"| {r['k']} | {_fmt(r, 'auroc')} | {_fmt(r, 'rank1')} | "
                f"{_fmt(r, 'unknown_flagged')} | {_fmt(r, 'known_accepted')} | "
                f"{_fmt(r, 'threshold')} |"
            )
    return lines


def _local_lines(local: dict[str, Any]) -> list[str]:
    """How the local scorers were run and how well their calibration held."""
    ece = ", ".join(f"{k} {v:.3f}" for k, v in local["ece_held_out"].items())
    cal = local["num_calibration_pairs"]
    return [
        "",
        "### local scorers and fusion",
        "",
        f"Scorers {', '.join(local['scorers'])} on each photo's {local['shortlist']} most similar "
        f"photos by the frozen backbone ({local['num_pairs']} pairs; elsewhere they score 0"
        + (
            f"; each correspondence weighted by LNBNN, k={local['lnbnn_k']}"
            if local.get("lnbnn_k")
            else ""
        )  # fmt: skip
        + (
            f"; only keypoints in the {local['foreground']:.0%} of each photo the frozen "
            "backbone attends to most"
            + (
                f", from {local['oversample']}x the usual number extracted"
                if local.get("oversample", 1) > 1
                else ""
            )
            if local.get("foreground", 1.0) < 1
            else ""
        )  # fmt: skip
        + "). "
        "Each scorer's pair score, the frozen cosine included, is calibrated to P(same) "
        f"(isotonic) on pairs of trained individuals' photos ({cal['same']} same, "
        f"{cal['different']} different individual, other sightings); `fused` is the mean of "
        "the calibrated scores, recalibrated (Platt) on the same pairs; `stacked` weighs each "
        "scorer's log-odds by a logistic fit on those pairs (weights "
        f"{json.dumps(local.get('stacking_weights', {}))}). Expected calibration "
        f"error on held-out pairs of the never-trained individuals: {ece}. Seconds "
        f"(extraction + matching): {json.dumps(local['seconds'])}. Reliability plot: "
        f"{local['reliability_png']}.",
        *_roles_lines(local.get("roles") or {}),
        *_discovery_lines(local.get("discovery") or {}),
    ]


def _discovery_lines(discovery: dict[str, Any]) -> list[str]:
    """Discovery of the never-trained individuals (``reid discover``'s clustering), per score."""
    if not discovery:
        return []
    first = next(iter(discovery.values()))
    rows = [f"| {name} | {d['ari']:.3f} | {d['proposed']} | {d['count_error']:+d} | "
            f"{d['threshold']:.3f} |" for name, d in discovery.items()]  # fmt: skip
    return [
        "",
        f"Discovery: all {first['photos']} photos of the {first['true']} never-trained individuals "
        "as one batch of newcomers, grouped by average linkage on each score and cut at its NEW "
        "threshold (calibrated on the calibration individuals at the target false-match rate), "
        "as `reid discover` does; adjusted Rand index against the true individuals and the "
        "count error (proposed minus true):",
        "",
        "| score | ARI | proposed individuals | count error | cut |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    ]


def _roles_lines(roles: dict[str, Any]) -> list[str]:
    """The guarded method's choice and the calibration trials behind it."""
    if not roles:
        return []
    rows = [
        f"| {name} | {q['rank1']:.3f} | "
        + ("–" if q["auroc"] is None else f"{q['auroc']:.3f}")
        + " |"
        for name, q in roles["quality"].items()
    ]
    return [
        "",
        f"`guarded` names the individual by **{roles['rank_by']}** and calls NEW by "
        f"**{roles['decide_by']}**: each the best of these scores in leave-one-individual-out "
        "trials among the calibration photos (trained individuals; the frozen backbone keeps a "
        "job unless another score beats it by more than 0.02):",
        "",
        "| score | trial rank-1 | trial AUROC |",
        "| --- | --- | --- |",
        *rows,
    ]


def markdown(result: dict[str, Any], title: str) -> str:
    """Per scenario: a summary table per method, a by-condition table when the photos have
    conditions, and the per-fold table of ``ours``."""
    s = result["settings"]
    lines = [
        f"{title}. Mode **{result['mode']}**: {result['num_individuals']} individuals, "
        f"{len(result['folds'])} folds (individuals k left out), {result['num_enrolled']} "
        f"enrolled and {result['num_query']} later query photos. Mean over folds (± std), "
        "except TPR at 1 %/5 % false-match rate, measured on all folds' scores together (one "
        "fold's dozen unknown photos cannot tell 1 % from 5 %); "
        f"BAKS/BAUS at each fold's calibrated threshold (target FMR {s['target_fmr']:.0%}; "
        f"softmax criteria at a fixed {s['softmax_threshold']}).",
    ]
    if s.get("train_photos") == "all" and result["mode"] == "fast":
        lines.append(
            "The model trained on every photo of the trained individuals, so only the "
            "never-trained gallery is scored."
        )
    for scenario, sc in result["scenarios"].items():
        lines += _scenario_lines(scenario, sc)
    if result.get("local"):
        lines += _local_lines(result["local"])
    c = result.get("config", {})
    setup = (
        f"{c['model']['backbone']}, {c['data']['input_size']} px, up to {c['train']['epochs']} "
        f"epochs, photo_norm {c['model'].get('photo_norm', 'none')}; "
        if c
        else ""
    )
    lines += ["", f"Seed {s['seed']}; {setup}training time (s): "
              f"{json.dumps(result['train_seconds'])}; total {result['seconds']} s."]  # fmt: skip
    return "\n".join(lines)
