"""Population estimators against published numbers (../shared/data/ecology; see its README for
each value's source): one test per data set, skipped where the data are absent. The closed
models use the full likelihood (MARK, CAPTURE, wiqid), so they are checked against MARK's and
wiqid's printed values; hand-computable cases run without the data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from reid.ecology import closed
from reid.ecology.cjs import cjs
from reid.ecology.histories import read_histories

ECOLOGY = Path(__file__).resolve().parents[2] / "shared" / "data" / "ecology"
needs_data = pytest.mark.skipif(
    not ECOLOGY.is_dir(), reason=f"reference mark-recapture data not found at {ECOLOGY}"
)


def _ch(name: str) -> np.ndarray:
    return read_histories(ECOLOGY / name).matrix


@needs_data
def test_dipper_cjs_reproduces_mark():
    ch = _ch("dipper.csv")
    e = cjs(ch)
    # MARK output (wiqid test-survCJS.R); -2lnL from marked's vignette
    assert e.get("phi").estimate == pytest.approx(0.5602, abs=1e-4)
    assert e.get("p").estimate == pytest.approx(0.9026, abs=1e-4)
    assert (e.get("phi").lcl, e.get("phi").ucl) == pytest.approx((0.5105, 0.6088), abs=2e-4)
    assert (e.get("p").lcl, e.get("p").ucl) == pytest.approx((0.8305, 0.9460), abs=2e-4)
    assert -2 * e.log_likelihood == pytest.approx(666.8377, abs=1e-3)
    assert e.aic == pytest.approx(670.8377, abs=1e-3)
    assert e.get("phi").se == pytest.approx(0.025133, abs=2e-5)  # delta method (computed)
    t = cjs(ch, phi="t")
    stated = [0.6258, 0.4542, 0.4784, 0.6244, 0.6079, 0.5833]
    assert [t.get(f"phi{j + 1}").estimate for j in range(6)] == pytest.approx(stated, abs=1e-4)
    assert t.get("p").estimate == pytest.approx(0.9021, abs=1e-4)
    assert t.aic == pytest.approx(673.7301, abs=1e-3)
    full = cjs(ch, phi="t", p="t")  # 2T - 3 = 11 identifiable parameters; fits at least as well
    assert full.num_params == 11 and full.log_likelihood >= t.log_likelihood - 1e-6


@needs_data
def test_dipper_inp_reads_as_the_csv_does():
    inp = read_histories(ECOLOGY / "original" / "dipper.inp")
    csv_ = read_histories(ECOLOGY / "dipper.csv")
    assert inp.matrix.shape == csv_.matrix.shape == (294, 7)
    assert sorted(inp.strings()) == sorted(csv_.strings())
    assert inp.group_labels == ["Females", "Males"]  # from the header's "Group 1=Males ..."
    assert cjs(inp.matrix).get("phi").estimate == pytest.approx(0.5602, abs=1e-4)


@needs_data
def test_cottontail_closed_models_reproduce_mark():
    ch = _ch("cottontail_edwards_eberhardt.csv")
    e = closed.m0(ch)
    assert e.n_hat.estimate == pytest.approx(96.25877, abs=1e-3)  # MARK 96.258770
    assert (e.n_hat.lcl, e.n_hat.ucl) == pytest.approx((86.603278, 114.70669), abs=0.02)
    assert e.get("p").estimate == pytest.approx(0.081955, abs=1e-5)
    assert e.aic == pytest.approx(379.5941, abs=1e-3)
    h = closed.mh2(ch)
    assert h.n_hat.estimate == pytest.approx(135.47714, abs=0.01)  # MARK
    assert h.aic == pytest.approx(369.6155, abs=1e-3)
    pmix, p1, p2 = (h.get(k).estimate for k in ("pmix", "p1", "p2"))
    assert (pmix, p1, p2) == pytest.approx((0.1548, 0.1795, 0.0360), abs=1e-4)
    assert (h.n_hat.lcl, h.n_hat.ucl) == pytest.approx((95.586384, 256.61168), rel=0.01)
    # computed in the data's README (full likelihood; no published value exists)
    assert closed.mt(ch).n_hat.estimate == pytest.approx(95.0781, abs=1e-3)
    assert closed.mb(ch).n_hat.estimate == pytest.approx(93.8919, abs=1e-3)
    assert closed.chao(ch).n_hat.estimate == pytest.approx(133.781, abs=1e-3)


@needs_data
def test_kanha_tigers_closed_models_reproduce_mark():
    ch = _ch("kanha_tigers.csv")
    m0, mt, mb, mh2 = closed.m0(ch), closed.mt(ch), closed.mb(ch), closed.mh2(ch)
    assert m0.n_hat.estimate == pytest.approx(28.446, abs=1e-3)
    assert m0.aic == pytest.approx(155.2433, abs=1e-3)
    assert mt.n_hat.estimate == pytest.approx(28.051, abs=1e-3)
    assert mt.aic == pytest.approx(158.0698, abs=1e-3)
    stated = [0.1782, 0.1782, 0.1069, 0.4634, 0.2495, 0.1426, 0.1426, 0.1426, 0.1782, 0.2852]
    assert [mt.get(f"p{j + 1}").estimate for j in range(10)] == pytest.approx(stated, abs=1e-4)
    assert mt.n_hat.ucl == pytest.approx(36.180, abs=0.01)  # "MARK gives 36.180"
    assert mb.n_hat.estimate == pytest.approx(26.94, abs=5e-3)
    assert (mb.get("p").estimate, mb.get("c").estimate) == pytest.approx((0.2539, 0.1916), abs=1e-4)
    assert mb.n_hat.ucl == pytest.approx(36.861, abs=0.01)  # "MARK gives 36.861"
    assert mb.aic == pytest.approx(156.4496, abs=1e-3)
    assert mh2.n_hat.estimate == pytest.approx(31.52, abs=5e-3)
    assert mh2.aic == pytest.approx(158.6416, abs=1e-3)


@needs_data
def test_snowshoe_hare_full_likelihood_estimates():
    ch = _ch("snowshoe_hare.csv")
    assert np.bincount(ch.sum(axis=1))[1:].tolist() == [25, 22, 13, 5, 1, 2]  # f_i, stated
    # Rcapture's 75.4 / 75.1 are conditional-likelihood values; the README computes the full
    # likelihood (Otis et al.) MLEs that MARK would give: those are what we implement
    assert closed.m0(ch).n_hat.estimate == pytest.approx(74.7022, abs=1e-3)
    assert closed.mt(ch).n_hat.estimate == pytest.approx(74.3379, abs=1e-3)
    assert closed.mb(ch).n_hat.estimate == pytest.approx(79.0577, abs=1e-3)
    assert closed.chao(ch).n_hat.estimate == pytest.approx(82.205, abs=1e-3)


@needs_data
def test_two_sample_and_schnabel_reproduce_textbooks():
    with (ECOLOGY / "lincoln_petersen_examples.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows
    cases = {  # (M, n, m): Chapman N, SE or None (FSA's validation tests)
        (948, 421, 167): (2383, None),
        (109, 177, 57): (337, None),
        (421, 332, 88): (1578, None),
        (500, 149, 7): (9393, 3022),
        (1000, 243, 21): (11101, 2184),
    }
    for (big_m, n, m), (want, se) in cases.items():
        e = closed.chapman_counts(big_m, n, m)
        assert round(e.n_hat.estimate) == want
        if se is not None:
            assert round(e.n_hat.se) == se
    pine = closed.chapman_counts(421, 332, 88).n_hat  # Pine et al. Box 11.2: CI 1330-1826
    assert (round(pine.lcl), round(pine.ucl)) == (1330, 1826)
    with (ECOLOGY / "sunfish_schnabel.csv").open() as f:
        sun = list(csv.DictReader(f))
    c = np.array([int(r["caught"]) for r in sun])
    r = np.array([int(r["recaps"]) for r in sun])
    returned = np.array([int(x["retmarks"]) for x in sun])
    at_large = np.r_[0, np.cumsum(returned - r)[:-1]]
    e = closed.schnabel_counts(c, r, at_large)
    assert e.n_hat.estimate == pytest.approx(447.5, abs=0.05)
    assert e.get("N (Chapman-modified)").estimate == pytest.approx(429.6, abs=0.05)
    assert e.extra["sum_CM"] == 10740 and e.extra["sum_R"] == 24  # Krebs' sums


def test_chapman_from_histories_matches_counts_by_hand():
    # 3 marked on occasion 1, 4 caught on occasion 2, 2 of them marked: (4 * 5 / 3) - 1
    ch = np.array([[1, 1], [1, 1], [1, 0], [0, 1], [0, 1]])
    assert closed.chapman(ch).n_hat.estimate == pytest.approx(4 * 5 / 3 - 1)
    with pytest.raises(ValueError, match="two occasions"):
        closed.chapman(np.array([[1, 1, 0]]))


def test_m0_on_simulated_population_recovers_n():
    rng = np.random.default_rng(0)
    caught = rng.random((400, 6)) < 0.3
    ch = caught[caught.any(axis=1)].astype(int)
    e = closed.m0(ch)
    assert e.n_hat.lcl < 400 < e.n_hat.ucl
    assert abs(e.n_hat.estimate - 400) < 30
    assert e.get("p").estimate == pytest.approx(0.3, abs=0.03)


def test_no_recapture_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="caught twice"):
        closed.m0(np.eye(4, dtype=int))
