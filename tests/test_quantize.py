"""converters.quantize against the rules of quantization.md, recomputed independently
with plain per-channel loops (and brute force over every candidate Δ for "optimal")."""
import numpy as np
import pytest

from converters.quantize import (detect_levels, dequantize, int8_quantize, quinarize,
                                 ternarize)


# ---------------------------------------------------------------- independent oracles

def _groups(w, granularity):
    w = np.asarray(w, dtype=np.float64)
    if granularity == "channel":
        return [w[o].ravel() for o in range(w.shape[0])]
    return [w.ravel()]


def ref_twn(v):
    a = np.abs(v)
    delta = 0.7 * (sum(a) / len(a))
    idx = [i for i in range(len(v)) if a[i] > delta]
    alpha = sum(a[i] for i in idx) / len(idx) if idx else 0.0
    t = np.array([(1 if v[i] > 0 else -1) if i in set(idx) else 0 for i in range(len(v))])
    return t, alpha


def ref_optimal(v):
    a = np.abs(v)
    best, best_t, best_alpha = -1.0, np.zeros(len(v), int), 0.0
    for d in sorted(set(a.tolist()) | {0.0}):        # every distinct threshold candidate
        idx = a > d
        if not idx.any():
            continue
        s = a[idx].sum()
        obj = s * s / idx.sum()
        if obj > best * (1 + 1e-12):
            best, best_alpha = obj, s / idx.sum()
            best_t = np.where(idx, np.sign(v), 0).astype(int)
    return best_t, best_alpha


def ref_quinary(v):
    a = np.abs(v)
    e = sum(a) / len(a)
    d1, d2 = 0.5 * e, 1.4 * e
    t = np.zeros(len(v), int)
    num = den = 0.0
    for i in range(len(v)):
        if a[i] > d2:
            t[i] = 2 * (1 if v[i] > 0 else -1)
            num += 2 * a[i]
            den += 4
        elif a[i] > d1:
            t[i] = 1 if v[i] > 0 else -1
            num += a[i]
            den += 1
    return t, (num / den if den else 0.0)


def check(w, granularity, fn, got):
    levels, alpha = got
    assert levels.shape == w.shape and levels.dtype == np.int8
    assert alpha.shape == (w.shape[0],) and alpha.dtype == np.float32
    groups = _groups(w, granularity)
    if granularity == "channel":
        for o, g in enumerate(groups):
            t, a = fn(g)
            np.testing.assert_array_equal(levels[o].ravel(), t if a else 0)
            np.testing.assert_allclose(alpha[o], a, rtol=1e-6)
    else:
        t, a = fn(groups[0])
        np.testing.assert_array_equal(levels.ravel(), t if a else 0)
        np.testing.assert_allclose(alpha, np.full(w.shape[0], a), rtol=1e-6)


SHAPES = [(8, 3, 3, 3), (5, 17), (3, 1, 1, 1), (1, 7), (4, 2, 5, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("granularity", ["channel", "layer"])
def test_twn(shape, granularity):
    w = np.random.RandomState(1).randn(*shape).astype(np.float32)
    check(w, granularity, ref_twn, ternarize(w, granularity, "twn"))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("granularity", ["channel", "layer"])
def test_optimal(shape, granularity):
    w = np.random.RandomState(2).randn(*shape).astype(np.float32)
    check(w, granularity, ref_optimal, ternarize(w, granularity, "optimal"))


def test_optimal_is_at_least_as_good_as_twn():
    w = np.random.RandomState(3).standard_t(3, size=(16, 64)).astype(np.float32)
    for g in ("channel", "layer"):
        e_opt = np.linalg.norm(w - dequantize(*ternarize(w, g, "optimal")))
        e_twn = np.linalg.norm(w - dequantize(*ternarize(w, g, "twn")))
        assert e_opt <= e_twn + 1e-6


def test_optimal_with_ties():
    w = np.array([[1.0, 1.0, -1.0, 0.2, 0.2, 0.0]], np.float32)
    check(w, "channel", ref_optimal, ternarize(w, "channel", "optimal"))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("granularity", ["channel", "layer"])
def test_quinary(shape, granularity):
    w = np.random.RandomState(4).randn(*shape).astype(np.float32)
    check(w, granularity, ref_quinary, quinarize(w, granularity))


def test_int8():
    w = np.random.RandomState(5).randn(6, 4, 3, 3).astype(np.float32)
    w[2] = 0
    lv, s = int8_quantize(w)
    assert lv.dtype == np.int8 and lv.min() >= -127 and lv.max() <= 127
    for o in range(6):
        m = np.abs(w[o]).max()
        np.testing.assert_allclose(s[o], m / 127, rtol=1e-6)
        if m:
            np.testing.assert_array_equal(lv[o], np.clip(np.rint(w[o] / (m / 127)), -127, 127))
    assert not lv[2].any() and s[2] == 0


@pytest.mark.parametrize("fn", [lambda w, g: ternarize(w, g, "twn"),
                                lambda w, g: ternarize(w, g, "optimal"),
                                lambda w, g: quinarize(w, g)])
@pytest.mark.parametrize("granularity", ["channel", "layer"])
def test_edge_cases(fn, granularity):
    z = np.zeros((3, 2, 2), np.float32)                   # all zeros: alpha 0, levels 0
    lv, a = fn(z, granularity)
    assert not lv.any() and not a.any() and np.isfinite(a).all()
    w = np.random.RandomState(6).randn(4, 9).astype(np.float32)
    w[1] = 0                                              # one all-zero channel
    lv, a = fn(w, granularity)
    assert np.isfinite(a).all()
    if granularity == "channel":
        assert a[1] == 0 and not lv[1].any()
    one = np.array([[-0.5]], np.float32)                  # one element
    lv, a = fn(one, granularity)
    assert lv.ravel().tolist() in ([-1],) and np.isclose(a[0], 0.5)
    c = np.full((2, 5), 0.3, np.float32)                  # constant
    lv, a = fn(c, granularity)
    np.testing.assert_allclose(dequantize(lv, a), c, rtol=1e-6)


@pytest.mark.parametrize("max_level", [1, 2])
def test_detect_levels(max_level):
    rs = np.random.RandomState(7)
    t = rs.randint(-max_level, max_level + 1, size=(6, 3, 3, 3))
    alpha = rs.rand(6).astype(np.float32) + 0.1
    t[4] = 0                                              # an all-zero channel
    w = (alpha[:, None, None, None] * t).astype(np.float32)
    got = detect_levels(w, max_level)
    assert got is not None
    np.testing.assert_allclose(dequantize(*got), w, rtol=1e-6, atol=0)
    if max_level == 1:
        np.testing.assert_array_equal(got[0][[0, 1, 2, 3, 5]], t[[0, 1, 2, 3, 5]])
    assert detect_levels(rs.randn(6, 3, 3, 3).astype(np.float32), max_level) is None
    if max_level == 1:
        assert detect_levels((alpha[:, None] * np.array([[0, 1, 2, -2]])).astype(np.float32), 1) is None
    noisy = w + 1e-3 * rs.randn(*w.shape).astype(np.float32)
    assert detect_levels(noisy, max_level) is None


def test_bad_arguments():
    with pytest.raises(ValueError):
        ternarize(np.ones((2, 2)), "row")
    with pytest.raises(ValueError):
        ternarize(np.ones((2, 2)), "channel", "best")
    with pytest.raises(ValueError):
        quinarize(np.array([[np.nan, 1.0]]))
