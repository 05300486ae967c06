"""What ``reid match`` prints: a table, CSV or JSON of the answers, and the line that says how
the threshold was calibrated (cosine, or a local re-ranker's fused probability)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any


def scored_view(info: dict[str, Any], choice: Any) -> dict[str, Any]:
    """``info`` as the output describes it: when a local or fused score calls NEW, the
    calibration of that score (threshold, rates, pools) replaces the cosine one; ``scorer`` and
    ``note`` are added."""
    view = {**info, "scorer": choice.name, "note_line": choice.note}
    if choice.calibration is not None and choice.decides != "global":
        view["calibrated"] = True
        view["calibration"] = fused_summary(choice.calibration, choice.decides)
    return view


def fused_summary(cal: Any, name: str) -> dict[str, Any]:
    """The fit of score ``name`` (fused, or the local scorer alone) of a FusedCalibration,
    with the keys of a cosine calibration (so that the same lines describe it)."""
    from dataclasses import asdict

    return {
        **asdict(cal.fit_for(name)), "scorer": name, "local_scorer": cal.scorer,
        "shortlist": cal.shortlist, "unknown_pool": cal.unknown_pool,
        "num_unknown_individuals": cal.num_unknown_individuals, "pair_pool": cal.pair_pool,
        "num_pairs": cal.num_pairs, "at": cal.at,
    }  # fmt: skip


def calibration_line(info: dict[str, Any]) -> str:
    if not info["calibrated"]:
        return (
            "UNCALIBRATED gallery: decisions are the nearest individual and NEW is never said; "
            f"run `reid calibrate {info['directory']}`."
        )
    c = info["calibration"]
    what = "threshold"
    if c.get("scorer") in ("fused", "sift", "xfeat"):
        parts = "cosine + " + c["local_scorer"] if c["scorer"] == "fused" else c["scorer"]
        what = f"{c['scorer']} P(same) threshold ({parts}, {c['shortlist']} nearest photos)"
    line = (
        f"{what} {c['threshold']:.3f}: target false-match rate {c['target_fmr']:.1%}, "
        f"measured {c['fmr']:.1%} on {c['num_unknown_trials']} unknown trials; known photos "
        f"identified above threshold {c['tpr']:.1%} (calibrated {c['at']})"
    )
    pool = c.get("unknown_pool", "unspecified")
    if pool == "never-trained":
        return (
            f"{line}; the never-seen role was played by {c['num_unknown_individuals']} "
            "individuals the model never trained on"
        )
    why = (
        "individuals the model was trained on played the never-seen role"
        if pool == "trained"
        else "calibrated without --model, so trained individuals may have played newcomers"
    )
    return (
        f"{line}; OPTIMISTIC: {why}, and real newcomers score higher "
        "(docs/gallery.md: open-set calibration)"
    )


def _row_dict(row, info: dict[str, Any]) -> dict[str, Any]:
    from reid.detect.detector import NO_HEAD

    m = row.match
    return {
        "photo": str(row.path),
        "head": row.head or None,
        "heads": row.heads if row.head else None,
        "box": list(row.box) if row.box is not None else None,
        "head_confidence": round(row.confidence, 4) if row.confidence is not None else None,
        "screen": max(row.screen, key=row.screen.__getitem__) if row.screen else None,
        "screen_probabilities": (
            {k: round(v, 4) for k, v in row.screen.items()} if row.screen else None
        ),
        "decision": m.decision if m else ("NO HEAD" if row.error == NO_HEAD else "ERROR"),
        "score": round(m.score, 4) if m else None,
        "threshold": m.threshold if m else None,
        "calibrated": info["calibrated"],
        "enrolled_as": row.enrolled_as or None,
        "error": row.error or None,
        "candidates": [_candidate_dict(c, row.evidence) for c in (m.candidates if m else [])],
    }


def _candidate_dict(c, evidence: dict | None) -> dict[str, Any]:
    """One candidate; with a local re-ranker also each scorer's calibrated probability
    (``scores``) and the number of verified correspondences."""
    out = {
        "individual": c.individual,
        "score": round(c.score, 4),
        "gallery_photo": str(c.image_path),
    }
    e = (evidence or {}).get(c.image_id)
    if e is not None:
        out["scores"] = {k: round(v, 4) for k, v in e.probabilities.items()}
        out["correspondences"] = len(e.query_xy)
    return out


def _table(rows, info: dict[str, Any]) -> str:
    lines = [calibration_line(info)] + ([info["note_line"]] if info.get("note_line") else [])
    lines.append("")
    header = f"{'photo':<32} {'decision':<16} {'score':>6} {'thresh':>6}  candidates"
    lines += [header, "-" * len(header)]
    for row in rows:
        d = _row_dict(row, info)
        if row.match is None:
            lines.append(f"{row.label:<32} {d['decision']:<16} {'':>6} {'':>6}  {d['error']}")
            continue
        thresh = f"{d['threshold']:.3f}" if d["threshold"] is not None else "uncal."
        decision = d["decision"] + (f" -> {d['enrolled_as']}" if d["enrolled_as"] else "")
        cands = "  ".join(f"{c['individual']}:{c['score']:.3f}" for c in d["candidates"])
        if d["screen"]:
            cands = f"[{d['screen']} {d['screen_probabilities'][d['screen']]:.2f}]  {cands}"
        lines.append(f"{row.label:<32} {decision:<16} {d['score']:>6.3f} {thresh:>6}  {cands}")
        if d["error"]:  # e.g. an --enroll-new that was refused
            lines.append(f"{'':<32} {'':<16} {'':>6} {'':>6}  {d['error']}")
    return "\n".join(lines)


def _csv(rows, info: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "photo",
            "head",
            "box",
            "decision",
            "score",
            "threshold",
            "calibrated",
            "target_fmr",
            "measured_fmr",
            "calibration",
            "enrolled_as",
            "error",
            "candidates",
            "screen",
            "screen_probability",
        ]
    )
    cal = info["calibration"] if info["calibrated"] else {}
    for row in rows:
        d = _row_dict(row, info)
        writer.writerow(
            [
                d["photo"],
                d["head"] or "",
                ",".join(map(str, d["box"])) if d["box"] else "",
                d["decision"],
                d["score"],
                d["threshold"],
                d["calibrated"],
                cal.get("target_fmr", ""),
                cal.get("fmr", ""),
                _pool_word(info),
                d["enrolled_as"] or "",
                d["error"] or "",
                ";".join(f"{c['individual']}:{c['score']}" for c in d["candidates"]),
                d["screen"] or "",
                d["screen_probabilities"][d["screen"]] if d["screen"] else "",
            ]
        )
    return buf.getvalue().rstrip("\n")


def _pool_word(info: dict[str, Any]) -> str:
    """uncalibrated | honest (never-trained newcomers) | optimistic."""
    if not info["calibrated"]:
        return "uncalibrated"
    return "honest" if info["calibration"].get("unknown_pool") == "never-trained" else "optimistic"


def _json(rows, info: dict[str, Any]) -> str:
    return json.dumps(
        {
            "gallery": info["directory"],
            "calibrated": info["calibrated"],
            "calibration": info["calibration"],
            "scorer": info.get("scorer", "global"),
            "note": " ".join(filter(None, [calibration_line(info), info.get("note_line")])),
            "matches": [_row_dict(r, info) for r in rows],
        },
        indent=2,
    )


FORMATS = {"table": _table, "csv": _csv, "json": _json}
