"""Run the estimators a user asked for and lay the results out as a table or CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import numpy as np

from reid.ecology.cjs import cjs
from reid.ecology.closed import CLOSED_MODELS
from reid.ecology.estimate import Estimate

CJS_MODELS = ((".", "."), ("t", "t"))


def estimates_for(matrix: np.ndarray, model: str) -> list[Estimate | dict]:
    """The estimates of ``model`` (a name of :data:`CLOSED_MODELS`, ``cjs`` or ``all``) on the
    (I, T) matrix; a model that cannot be fitted to these data (no recapture, two occasions
    for Chapman, ...) gives ``{"model": name, "error": why}`` instead, so the rest still run."""
    names = {"all": [*CLOSED_MODELS, "cjs"], "mh": ["mh2", "chao"]}.get(model, [model])
    if model == "all" and matrix.shape[1] != 2:
        names.remove("chapman")
    out: list[Estimate | dict] = []
    for name in names:
        runs = (
            [lambda a=a, b=b: cjs(matrix, a, b) for a, b in CJS_MODELS]
            if name == "cjs"
            else [lambda name=name: CLOSED_MODELS[name](matrix)]
        )
        for run in runs:
            try:
                out.append(run())
            except ValueError as exc:
                out.append({"model": name, "error": str(exc)})
    return out


def render(results: Sequence[tuple[str, list[Estimate | dict]]], fmt: str) -> str:
    """A plain-text table (N-hat and the AIC table of the likelihood models first, then CJS) or
    a long CSV (group, model, parameter, estimate, se, lcl, ucl, aic)."""
    rows = []
    for group, estimates in results:
        for e in estimates:
            if isinstance(e, dict):
                rows.append([group, e["model"], "error", e["error"], "", "", "", ""])
                continue
            for p in e.parameters:
                rows.append(
                    [
                        group,
                        e.model,
                        p.name,
                        _num(p.estimate),
                        _num(p.se),
                        _num(p.lcl),
                        _num(p.ucl),
                        _num(e.aic),
                    ]
                )
    head = ["group", "model", "parameter", "estimate", "se", "lcl", "ucl", "aic"]
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([head, *rows])
        return buf.getvalue().rstrip("\n")
    lines = []
    for group, estimates in results:
        if len(results) > 1:
            lines.append(f"== {group} ==")
        lines += _table(group, estimates)
    return "\n".join(lines)


def _table(group: str, estimates: list[Estimate | dict]) -> list[str]:
    closed = [e for e in estimates if isinstance(e, Estimate) and e.n_hat is not None]
    lines = (
        []
        if not closed
        else [
            "population size (95 % interval)",
            f"{'model':<24}{'N':>10}{'SE':>9}{'interval':>22}{'AIC':>11}{'dAIC':>8}",
        ]
    )
    aics = [e.aic for e in closed if e.aic is not None]
    best = min(aics) if aics else None
    for e in sorted(closed, key=lambda e: (e.aic is None, e.aic or 0)):
        n = e.n_hat
        interval = f"{n.lcl:.1f} - {n.ucl:.1f}" if n.lcl is not None and n.ucl is not None else ""
        d = f"{e.aic - best:.2f}" if e.aic is not None and best is not None else ""
        lines.append(
            f"{e.model:<24}{n.estimate:>10.2f}{_fmt(n.se, 9)}{interval:>22}{_fmt(e.aic, 11)}{d:>8}"
        )
    intervals: dict[str, list[str]] = {}
    for e in closed:
        intervals.setdefault(e.interval, []).append(e.model)
    for text, models in intervals.items():
        lines.append(f"  {', '.join(models)}: {text}")
    if closed:
        lines.append("  AIC compares the likelihood models (M0, Mt, Mb, Mh2) only.")
    for e in estimates:
        if isinstance(e, Estimate) and e.n_hat is None:
            lines += [
                "",
                f"{e.model}  (-2 log L {-2 * e.log_likelihood:.4f}, AIC {e.aic:.4f}, "
                f"{e.num_params} parameters)",
            ]
            for p in e.parameters:
                ci = f"{p.lcl:.4f} - {p.ucl:.4f}" if p.lcl is not None else "not estimable"
                lines.append(f"  {p.name:<12}{p.estimate:>8.4f}  SE {_fmt(p.se, 8, 4)}   {ci}")
    for e in estimates:
        if isinstance(e, dict):
            lines.append(f"{e['model']}: not fitted: {e['error']}")
    for e in estimates:
        if isinstance(e, Estimate) and e.note:
            lines.append(f"note ({e.model}): {e.note}")
    return lines


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def _fmt(x: float | None, width: int, digits: int = 2) -> str:
    return f"{'':>{width}}" if x is None else f"{x:>{width}.{digits}f}"
