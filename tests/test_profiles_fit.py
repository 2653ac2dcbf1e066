"""ProfileTable I/O and the fitted scaling law: never negative, monotone where physics says so."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipetune.profiles import ProfileRow, ProfileTable, ScalingLaw, VariantProfile


def test_csv_round_trip_keeps_header_and_rows(tmp_path):
    t = ProfileTable(header=["measured on a test machine"])
    t.upsert(ProfileRow("v", 1, 1, 0.01, 0.009, 0.02, 100.0, 1.5, 200.0))
    t.upsert(ProfileRow("v", 4, 2, 0.02, 0.019, 0.03, 200.0, 1.5, 200.0, "fitted"))
    path = tmp_path / "p.csv"
    t.to_csv(path)
    back = ProfileTable.read_csv(path)
    assert back.header == ["measured on a test machine"]
    assert sorted(back.rows, key=lambda r: r.batch) == sorted(t.rows, key=lambda r: r.batch)


def test_law_recovers_generating_parameters():
    a, k, s = 0.004, 0.01, 0.3
    law = ScalingLaw(a, k, s)
    rows = [
        ProfileRow("v", b, c, law.mean(b, c), law.mean(b, c), 1.3 * law.mean(b, c), b / law.mean(b, c))
        for b in (1, 2, 4, 8)
        for c in (1, 2)
    ]
    fit = ScalingLaw.fit(rows)
    for b in (1, 16, 64):
        for c in (1, 4, 8):
            assert abs(fit.mean(b, c) - law.mean(b, c)) / law.mean(b, c) < 0.02


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.001, 1.0), min_size=4, max_size=4),
    st.floats(0.0, 0.5),
)
def test_fitted_cells_are_positive_and_monotone(lat, noise):
    # Arbitrary (even non-monotone, noisy) measurements at b in {1, 4}, c in {1, 2}.
    cells = [(1, 1), (4, 1), (1, 2), (4, 2)]
    rows = [ProfileRow("v", b, c, x, x, x * (1 + noise), b / x) for (b, c), x in zip(cells, lat)]
    vp = VariantProfile("v", rows)
    grid = [(b, c) for b in (2, 8, 16, 32) for c in (3, 4, 8)]  # only fitted cells
    means = {(b, c): vp.row(b, c).latency_mean_s for b, c in grid}
    assert all(m > 0 and np.isfinite(m) for m in means.values())
    for b, c in grid:
        r = vp.row(b, c)
        assert r.source == "fitted"
        assert r.latency_p99_s >= r.latency_mean_s * 0.999
        for b2, c2 in grid:
            if b2 >= b and c2 == c:
                assert means[(b2, c)] >= means[(b, c)] * (1 - 1e-9)  # more items never faster
                if not vp.batch_ceiling:  # throughput grows with batch, unless the data showed it falling
                    assert b2 / means[(b2, c)] >= b / means[(b, c)] * (1 - 1e-9)
            if vp.batch_ceiling and b > 4:  # beyond the largest measured batch: never more than measured there
                best = max(4 / x for (bb, cc), x in zip(cells, lat) if bb == 4 and cc == max(vp.batch_ceiling))
                assert b / means[(b, c)] <= best * vp.law.mean(4, max(vp.batch_ceiling)) / vp.law.mean(4, c) * (
                    1 + 1e-9
                )
            if c2 >= c and b2 == b:
                assert means[(b, c2)] <= means[(b, c)] * (1 + 1e-9)  # more cores never slower


def test_measured_rows_win_over_the_law():
    rows = [ProfileRow("v", 1, 1, 0.010, 0.010, 0.012, 100.0), ProfileRow("v", 2, 1, 0.015, 0.015, 0.02, 133.0)]
    vp = VariantProfile("v", rows)
    assert vp.row(1, 1) is rows[0]
    t = ProfileTable(rows).filled([1, 2, 4], [1, 2])
    assert len(t.rows) == 6
    assert sum(r.source == "fitted" for r in t.rows) == 4


def test_cells_are_the_numbers_of_row_measured_or_fitted():
    rows = [
        ProfileRow(
            "v", b, c, 0.01 * b / c + 0.002, 0.01 * b / c + 0.001, 0.02 * b / c + 0.004, b / (0.01 * b / c + 0.002)
        )
        for b in (1, 4)
        for c in (1, 2)
    ]
    vp = VariantProfile("v", rows)
    for grid in ([(1, 1), (4, 2)], [(1, 1), (2, 2), (8, 1), (4, 4)]):  # all measured; some fitted
        cells = vp.cells(grid)
        assert cells.shape == (len(grid), 4)
        for (b, c), got in zip(grid, cells):
            r = vp.row(b, c)
            assert got.tolist() == [r.latency_mean_s, r.latency_p50_s, r.latency_p99_s, r.throughput_rps]
