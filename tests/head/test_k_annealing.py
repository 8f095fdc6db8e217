import pytest
from hypothesis import given
from hypothesis import strategies as st

from csrv2 import KAnnealing


def test_endpoints_and_plateau():
    s = KAnnealing(k_start=64, k_end=2, total_steps=1000, decay_fraction=0.7)
    assert s(0) == 64 and s(700) == 2 and s(999) == 2 and s(10_000) == 2
    assert s(350) == round(64 * 0.5 + 2 * 0.5)


def test_clipping_to_hidden_quarter_and_k_end():
    assert KAnnealing(64, 2, 100, 0.7, hidden=64)(0) == 16
    assert KAnnealing(64, 8, 100, 0.7, hidden=16)(0) == 8  # hidden/4 = 4 < k_end → k_end
    assert KAnnealing(4, 8, 100, 0.7)(0) == 8


def test_no_annealing_when_decay_fraction_zero():
    s = KAnnealing(64, 2, 100, 0.0)
    assert {s(t) for t in range(100)} == {2}


@given(
    st.integers(1, 512),
    st.integers(1, 64),
    st.integers(1, 5000),
    st.floats(0, 1),
    st.one_of(st.none(), st.integers(64, 8192)),
)
def test_integer_and_never_increasing(k_start, k_end, total, frac, hidden):
    s = KAnnealing(k_start, k_end, total, frac, hidden)
    ks = [s(t) for t in range(0, total + 2, max(1, total // 50))]
    assert all(isinstance(k, int) for k in ks)
    assert all(a >= b for a, b in zip(ks, ks[1:]))
    assert s(total) == k_end and ks[0] <= max(k_start, k_end)


def test_bad_arguments():
    with pytest.raises(ValueError, match="decay_fraction"):
        KAnnealing(64, 2, 100, 1.5)
    with pytest.raises(ValueError, match="k_end"):
        KAnnealing(64, 0, 100)
