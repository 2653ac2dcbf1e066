"""`pipetune profile import`: perf_analyzer, capacity-table and generic CSVs become validated ProfileTables.

The samples in tests/data/import/ are written in the formats' documented layouts (perf_analyzer's `-f` CSV as in
its docs; InfAdapter's capacity_result CSV header), not by our writer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipetune.cli.main import app
from pipetune.profiler.importers import import_profiles
from pipetune.profiles import ProfileError, ProfileTable
from pipetune.spec import load_pipeline

DATA = Path(__file__).parent / "data" / "import"


def _cli(*args: str):
    return CliRunner().invoke(app, ["profile", "import", *args])


def test_triton_two_files_map_to_cells_and_load_back(tmp_path):
    out = tmp_path / "p.csv"
    res = _cli(
        "triton",
        f"{DATA / 'perf_analyzer_b1.csv'}=resnet50:1:2",
        f"{DATA / 'perf_analyzer_b4.csv'}=resnet50:4:2",
        "-o",
        str(out),
    )
    assert res.exit_code == 0, res.output
    t = ProfileTable.read_csv(out)
    assert [h for h in t.header if h.startswith("imported: triton")] and len(t.rows) == 2
    b1 = next(r for r in t.rows if r.batch == 1)
    # Latency from the concurrency-1 row, microseconds -> seconds; mean = sum of the components.
    assert b1.cores == 2 and b1.latency_p50_s == pytest.approx(13690e-6) and b1.latency_p99_s == pytest.approx(20377e-6)
    assert b1.latency_mean_s == pytest.approx((210 + 2031 + 58 + 198 + 11402 + 21 + 0) * 1e-6)
    # The max over concurrencies (88.6 at concurrency 2) overlaps requests: capped at batch / mean (one service
    # model for planner and simulator, issue 11 item 2), and the provenance says so.
    assert b1.throughput_rps == pytest.approx(min(88.6, 1 / b1.latency_mean_s), rel=1e-4)
    assert any("capped at batch / mean latency" in h for h in t.header)
    b4 = next(r for r in t.rows if r.batch == 4)
    assert b4.throughput_rps == pytest.approx(min(201.2, 4 / b4.latency_mean_s), rel=1e-4) and b4.source == "measured"
    # The normal loader (a pipeline naming the file) accepts it and fits the missing cells.
    spec = tmp_path / "p.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "imp",
                "sla": {"seconds": 1.0},
                "profile": "p.csv",
                "caps": {"batch_sizes": [1, 4], "cores": [1, 2]},
                "stages": [{"name": "cls", "variants": [{"name": "resnet50", "accuracy": 0.76}]}],
            }
        )
    )
    p = load_pipeline(spec)
    assert p.stage("cls").variants[0].name == "resnet50"


def test_triton_needs_the_cell_and_names_bad_columns(tmp_path):
    res = _cli("triton", str(DATA / "perf_analyzer_b1.csv"), "-o", str(tmp_path / "p.csv"))
    assert res.exit_code != 0 and "VARIANT:BATCH:CORES" in str(res.exception or res.output)
    bad = tmp_path / "bad.csv"
    bad.write_text("Concurrency,Inferences/Second,p50 latency\n1,70,13000\n")
    with pytest.raises(ProfileError, match=r"missing column\(s\) \['p99 latency'\]"):
        import_profiles("triton", [str(bad)], variant="r", batch=1, cores=1)
    bad.write_text((DATA / "perf_analyzer_b4.csv").read_text().replace("166.4", "fast"))
    with pytest.raises(ProfileError, match=r"line 2, column 'Inferences/Second': 'fast' is not a number"):
        import_profiles("triton", [str(bad)], variant="r", batch=1, cores=1)


def test_capacity_table_one_cell_per_arch_batch_cpu(tmp_path):
    out = tmp_path / "cap.csv"
    res = _cli("capacity", str(DATA / "infadapter_capacity.csv"), "-o", str(out))
    assert res.exit_code == 0, res.output
    t = ProfileTable.read_csv(out)
    cells = {(r.variant, r.batch, r.cores): r for r in t.rows}
    assert set(cells) == {("resnet18", 1, 1), ("resnet18", 1, 2), ("resnet50", 1, 1), ("resnet50", 1, 2)}
    r = cells[("resnet50", 1, 2)]
    assert r.throughput_rps == 20 and r.latency_mean_s == pytest.approx(1 / 20) and r.memory_mb == 1536
    assert any("capacity resnet50 b1 c2: 14/s@500ms" in h for h in t.header)
    # 2 cores serve more than 1 in this table, and the fit sees it.
    vp = t.variant_profile("resnet18")
    assert vp.row(1, 2).throughput_rps > vp.row(1, 1).throughput_rps


def test_capacity_disagreeing_rows_are_refused(tmp_path):
    bad = tmp_path / "cap.csv"
    text = (DATA / "infadapter_capacity.csv").read_text().splitlines()
    text[2] = text[2].replace(",20,23,", ",20,40,")
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(ProfileError, match=r"lines \[2, 3, 4\]: saturation_tp of resnet18 batch 1 on 1 CPU differs"):
        import_profiles("capacity", [str(bad)])


def test_generic_with_mapping_and_ms(tmp_path):
    out = tmp_path / "g.csv"
    res = _cli(
        "generic",
        str(DATA / "generic_ms.csv"),
        "--map",
        "variant=model,batch=bs,cores=cpus,latency_mean_s=avg_ms,latency_p50_s=median_ms,latency_p99_s=p99_ms,"
        "throughput_rps=rps",
        "--unit",
        "ms",
        "-o",
        str(out),
    )
    assert res.exit_code == 0, res.output
    t = ProfileTable.read_csv(out)
    r = next(r for r in t.rows if (r.batch, r.cores) == (4, 2))
    assert r.latency_p99_s == pytest.approx(0.0748) and r.throughput_rps == pytest.approx(60.3)
    assert any("latencies in ms" in h for h in t.header)
    # Without the mapping the error names the missing columns and the fix.
    res = _cli("generic", str(DATA / "generic_ms.csv"), "-o", str(tmp_path / "h.csv"))
    assert res.exit_code != 0 and "--map" in str(res.exception)


def test_generic_p99_below_p50_and_bad_unit(tmp_path):
    swapped = "latency_p50_s=p99_ms,latency_p99_s=median_ms,variant=model,batch=bs,cores=cpus,throughput_rps=rps"
    with pytest.raises(ProfileError, match=r"line 2: median_ms=40.7 is below p99_ms=47.9; check the column mapping"):
        import_profiles("generic", [str(DATA / "generic_ms.csv")], mapping=swapped, unit="ms")
    with pytest.raises(ProfileError, match=r"--unit 'min'"):
        import_profiles("generic", [str(DATA / "generic_ms.csv")], unit="min")
    with pytest.raises(ProfileError, match=r"format 'onnx'"):
        import_profiles("onnx", [str(DATA / "generic_ms.csv")])


def test_measure_stays_the_default_subcommand(tmp_path):
    res = CliRunner().invoke(app, ["profile", "--help"])
    assert res.exit_code == 0 and "import" in res.output and "measure" in res.output
    res = CliRunner().invoke(app, ["profile", str(tmp_path / "missing.yaml")])
    assert res.exit_code != 0 and "missing.yaml" in str(res.exception or res.output)
