"""`profile_pipeline` / `pipetune profile`: resumable, a failing variant skipped with a clear report, plots."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipetune.models.base import ModelAdapter
from pipetune.profiler import profile_pipeline
from pipetune.profiler.pipeline import parse_budget
from pipetune.profiles import ProfileTable
from pipetune.spec import load_pipeline


class Busy(ModelAdapter):
    """Sleeps `ms` milliseconds per batch plus 0.2 ms per item; `broken=True` fails to load."""

    def __init__(self, ms: float = 1.0, broken: bool = False):
        self.ms, self.broken = ms, broken

    def load(self) -> None:
        if self.broken:
            raise OSError("model file truncated")

    def predict(self, batch):
        time.sleep((self.ms + 0.2 * len(batch)) / 1000)
        return list(batch)

    def sample_inputs(self, n):
        return list(range(n))


def _spec(tmp_path: Path, broken: bool = True) -> Path:
    here = __name__
    variants = [
        {"name": "fast", "accuracy": 0.8, "model": {"adapter": f"{here}:Busy", "params": {"ms": 0.5}}},
        {"name": "slow", "accuracy": 0.9, "model": {"adapter": f"{here}:Busy", "params": {"ms": 2}}},
        {"name": "nomodel", "accuracy": 0.5},
    ]
    if broken:
        variants.append(
            {"name": "broken", "accuracy": 0.99, "model": {"adapter": f"{here}:Busy", "params": {"broken": True}}}
        )
    spec = {
        "name": "t",
        "sla": {"seconds": 1.0},
        "profile": "prof.csv",
        "caps": {"batch_sizes": [1, 4], "cores": [1]},
        "stages": [{"name": "s", "variants": variants}],
    }
    p = tmp_path / "pipeline.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


@pytest.mark.slow
def test_profile_pipeline_skips_failures_and_resumes(tmp_path):
    spec = _spec(tmp_path)
    pl = load_pipeline(spec, check_profiles=False)
    r1 = profile_pipeline(pl, cell_budget_s=0.1, min_batches=10, progress=False)
    # the broken variant is reported with its reason; the others are measured anyway
    assert [(s, v) for s, v, c, _ in r1.failed] == [("s", "broken")]
    assert "model file truncated" in r1.failed[0][3]
    assert any(v == "nomodel" and "no `model:` mapping" in why for _, v, why in r1.skipped)
    table = ProfileTable.read_csv(tmp_path / "prof.csv")
    assert {(r.variant, r.batch) for r in table.rows} == {("fast", 1), ("fast", 4), ("slow", 1), ("slow", 4)}
    assert any("MEASURED by `pipetune profile`" in h for h in table.header)
    assert (tmp_path / "prof.png").stat().st_size > 1000
    slow1 = next(r for r in table.rows if (r.variant, r.batch) == ("slow", 1))
    fast1 = next(r for r in table.rows if (r.variant, r.batch) == ("fast", 1))
    assert slow1.latency_p50_s > fast1.latency_p50_s
    # resumable: a second run measures nothing new and leaves the rows as they were
    before = (tmp_path / "prof.csv").read_text().split("variant,batch")[1]
    r2 = profile_pipeline(pl, cell_budget_s=0.1, min_batches=10, progress=False, plot=False)
    assert [m.variant for _, m in r2.measured] == []
    assert (tmp_path / "prof.csv").read_text().split("variant,batch")[1] == before
    # a new batch size measures only the missing cells
    r3 = profile_pipeline(
        pl, variants=["fast"], batches=[1, 2, 4], cell_budget_s=0.1, min_batches=10, progress=False, plot=False
    )
    assert [(m.variant, m.batch) for _, m in r3.measured] == [("fast", 2)]
    # --force re-measures
    r4 = profile_pipeline(
        pl, variants=["fast"], batches=[1], cell_budget_s=0.1, min_batches=10, force=True, progress=False, plot=False
    )
    assert [(m.variant, m.batch) for _, m in r4.measured] == [("fast", 1)]
    # the written table is a valid profile for the spec once the unprofiled variants are gone
    assert len(ProfileTable.read_csv(tmp_path / "prof.csv").rows) == 5


def test_cli_profile_reports_the_failure_and_exits_nonzero(tmp_path):
    from pipetune.cli.main import app

    spec = _spec(tmp_path)
    res = CliRunner().invoke(
        app, ["profile", str(spec), "--batches", "1", "--cell-budget", "0.05", "--min-batches", "5", "--no-plot"]
    )
    assert res.exit_code == 1, res.output
    assert "FAILED" in res.output and "broken" in res.output and "model file truncated" in res.output
    assert "fast" in res.output and "slow" in res.output


def test_cli_profile_bad_flags_name_the_flag(tmp_path):
    from pipetune.cli.main import app

    spec = _spec(tmp_path, broken=False)
    res = CliRunner().invoke(app, ["profile", str(spec), "--batches", "1,x"])
    assert res.exit_code != 0 and "--batches" in str(res.exception)
    res = CliRunner().invoke(app, ["profile", str(spec), "--stages", "nope"])
    assert "unknown stage 'nope'" in str(res.exception)


@pytest.mark.parametrize("text, secs", [("90s", 90), ("20m", 1200), ("1h", 3600), ("2.5", 2.5), (None, None)])
def test_parse_budget(text, secs):
    assert parse_budget(text) == secs


def test_parse_budget_rejects_nonsense():
    from pipetune.errors import PipetuneError

    with pytest.raises(PipetuneError, match="90s, 20m or 1h"):
        parse_budget("soon")


def test_a_spent_budget_leaves_cells_for_the_next_run(tmp_path):
    spec = _spec(tmp_path, broken=False)
    pl = load_pipeline(spec, check_profiles=False)
    r = profile_pipeline(pl, budget_s=1e-9, progress=False, plot=False)
    assert r.measured == [] and not r.failed
    assert {(v, tuple(b)) for _, v, _, b in r.out_of_budget} == {("fast", (1, 4)), ("slow", (1, 4))}
    assert not (tmp_path / "prof.csv").exists()


@pytest.mark.slow
def test_a_run_that_measures_every_cell_again_drops_the_earlier_runs_lines(tmp_path):
    spec = _spec(tmp_path, broken=False)
    pl = load_pipeline(spec, check_profiles=False)
    kw = dict(batches=[1], cell_budget_s=0.05, min_batches=5, progress=False, plot=False)
    profile_pipeline(pl, **kw)
    first = ProfileTable.read_csv(tmp_path / "prof.csv").header
    dated = [h for h in first if h[:4].isdigit()]
    assert dated and not any("noisy" in h for h in first)  # the stamp no longer claims what it did not measure
    # re-measuring one variant of two: the first run's lines still describe the other's cells and stay
    profile_pipeline(pl, variants=["fast"], force=True, **kw)
    second = ProfileTable.read_csv(tmp_path / "prof.csv").header
    assert all(h in second for h in dated)
    # re-measuring every cell: the earlier runs' lines describe nothing left in the file and go
    time.sleep(1.1)  # a new run stamp (to the second)
    profile_pipeline(pl, force=True, **kw)
    third = ProfileTable.read_csv(tmp_path / "prof.csv").header
    assert not any(h in third for h in dated)
    assert any("measured every cell again" in h for h in third)
