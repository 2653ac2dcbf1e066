"""The committed profile packs of IPA's five pipelines (src/pipetune/examples/paper): each spec loads (SLA
reachable), carries IPA's variants, accuracies, SLA and weights, and each profile.csv is exactly what the
committed measurements give, with a provenance header, measured 1-core rows for every variant and fitted
rows where nothing was measured."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from pipetune.profiles import ProfileTable
from pipetune.spec import load_pipeline

ROOT = Path(__file__).resolve().parents[1]
PACKS = ROOT / "src" / "pipetune" / "examples" / "paper"
SHARED = ROOT.parent / "shared"
NAMES = ["video", "audio-qa", "audio-sent", "sum-qa", "nlp"]


def _script():
    spec = importlib.util.spec_from_file_location("make_paper_profiles", ROOT / "scripts" / "make_paper_profiles.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def script():
    return _script()


@pytest.fixture(scope="module")
def raw():
    return json.loads((PACKS / "measurements.json").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_pack_loads_and_its_sla_is_reachable(name):
    p = load_pipeline(PACKS / name / "pipeline.yaml")  # validates profiles and SLA reachability
    assert p.objective.accuracy == "pas"
    for st in p.stages:
        for v in st.variants:
            assert 0 < v.accuracy < 1
            assert v.model and v.model["adapter"] == "pipetune.models.paper:PaperModel"


@pytest.mark.parametrize("name", NAMES)
def test_pack_matches_ipa_reference(name):
    if not SHARED.exists():
        pytest.skip("../shared (IPA reference facts) is not present")
    ref = yaml.safe_load((SHARED / "reference" / "ipa.yaml").read_text())
    p = load_pipeline(PACKS / name / "pipeline.yaml", check_profiles=False)
    stages = ref["pipelines"][name]
    assert p.topological_order() == [s["stage"] for s in stages]
    for s in stages:
        got = {v.name: v.accuracy for v in p.stage(s["stage"]).variants}
        assert got == pytest.approx({k: a / 100.0 for k, a in s["variants"].items()}, abs=1e-9)
    assert p.sla.seconds == ref["sla_seconds"][name]
    w = ref["weights"].get(name.replace("-", "_"))
    if w:  # audio-sent has no published weights (audio-qa's are used)
        assert (p.objective.alpha, p.objective.beta) == (w["alpha"], w["beta"])


@pytest.mark.parametrize("name", NAMES)
def test_profile_is_exactly_what_the_committed_measurements_give(name, script, raw):
    committed = ProfileTable.read_csv(PACKS / name / "profile.csv")
    table, missing = script.build_table(name, raw)
    assert not missing
    rebuilt = ProfileTable.parse_csv(table.to_csv())
    stale = "profile.csv is stale: run scripts/make_paper_profiles.py --no-measure"
    assert rebuilt.header == committed.header, stale
    key = lambda r: (r.variant, r.batch, r.cores)  # noqa: E731
    got, want = sorted(rebuilt.rows, key=key), sorted(committed.rows, key=key)
    assert [key(r) + (r.source,) for r in got] == [key(r) + (r.source,) for r in want], stale
    for a, b in zip(got, want):  # 6 significant digits in the file; allow last-digit float noise
        assert a.latency_p99_s == pytest.approx(b.latency_p99_s, rel=1e-5), stale
        assert a.throughput_rps == pytest.approx(b.throughput_rps, rel=1e-5), stale


@pytest.mark.parametrize("name", NAMES)
def test_profile_rows_measured_and_fitted_as_documented(name):
    table = ProfileTable.read_csv(PACKS / name / "profile.csv")
    header = "\n".join(table.header)
    for must in ("Machine:", "Runs:", "make_paper_profiles.py", "MEASURED", "FITTED", "Inputs per item"):
        assert must in header
    p = load_pipeline(PACKS / name / "pipeline.yaml", check_profiles=False)
    for st in p.stages:
        for v in st.variants:
            rows = {(r.batch, r.cores): r for r in table.rows_for(v.name)}
            for b in (1, 2):
                assert rows[(b, 1)].source == "measured", f"{v.name} b={b} on 1 core must be measured"
            for c in (4, 8):  # this VM has 2 cores: more is always extrapolated
                assert all(rows[(b, c)].source == "fitted" for b in (1, 2, 4, 8, 16))
            for r in rows.values():
                assert r.latency_p99_s >= r.latency_p50_s > 0 and r.throughput_rps > 0
            # fitted cells obey the law's physics: more cores never slow a batch down
            for b in (1, 8):
                assert rows[(b, 8)].latency_mean_s <= rows[(b, 4)].latency_mean_s + 1e-12


def test_raw_measurements_are_complete_and_plausible(raw):
    assert raw["runs"] and all("machine" in r for r in raw["runs"])
    for key, by_cores in raw["cells"].items():
        for cores, cells in by_cores.items():
            for _b, c in cells.items():
                assert c["n_batches"] >= 2, key
                assert len(c["cpus"]) == int(cores), f"{key}: measured on {c['cpus']} for {cores} core(s)"
                assert c["p99_s"] >= c["p50_s"] > 0


@pytest.mark.parametrize("name", NAMES)
def test_pack_has_readme_and_plot(name):
    readme = (PACKS / name / "README.md").read_text()
    assert "| variant |" in readme and "make_paper_profiles.py" in readme
    png = ROOT / "docs" / "figures" / f"paper-{name}.png"
    assert png.exists() and png.stat().st_size > 10_000
