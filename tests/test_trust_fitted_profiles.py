"""Issue 11 item 1: no free lunch from fitted profiles. A law claims a batching gain only from >= 2 measured batch
sizes and a core gain only from >= 2 measured core counts; plans mark options that rest on fitted cells, say
once what those assume, and `--measured-only` plans on measured cells alone."""

import json
from pathlib import Path

import pytest

from pipetune.errors import PipetuneError
from pipetune.optimizer import plan_pipeline
from pipetune.profiles import ProfileRow, ProfileTable, VariantProfile
from pipetune.spec import load_pipeline

HEADER = "variant,batch,cores,latency_mean_s,latency_p50_s,latency_p99_s,throughput_rps,source\n"


def _row(v, b, c, mean, source="measured"):
    return ProfileRow(v, b, c, mean, 0.95 * mean, 1.3 * mean, b / mean, source=source)


def test_one_batch_size_gives_no_batching_gain():
    # the mt-large: 0.30 s at batch 1 was assumed to serve batch 8 in 0.30 s (26.7 items/s, not 3.3)
    vp = VariantProfile("mt-large", [_row("mt-large", 1, 1, 0.30)])
    r8 = vp.row(8, 1)
    assert r8.source == "fitted"
    assert r8.latency_mean_s == pytest.approx(2.40)
    assert r8.throughput_rps == pytest.approx(1 / 0.30)
    assert any("one batch size" in a for a in vp.assumptions)


def test_one_core_count_gives_no_core_gain():
    vp = VariantProfile("resnet152", [_row("resnet152", 1, 1, 0.09), _row("resnet152", 4, 1, 0.30)])
    assert vp.row(4, 2).throughput_rps == pytest.approx(vp.row(4, 1).throughput_rps)
    assert vp.row(4, 8).latency_mean_s == pytest.approx(0.30)
    assert vp.assumptions == ["measured on one core count (1): no speed-up from more cores assumed"]


def test_two_batch_sizes_and_two_core_counts_may_claim_gains():
    rows = [_row("m", 1, 1, 0.10), _row("m", 4, 1, 0.16), _row("m", 1, 2, 0.06), _row("m", 4, 2, 0.095)]
    vp = VariantProfile("m", rows)
    assert vp.assumptions == []
    assert vp.row(8, 1).throughput_rps > rows[1].throughput_rps  # batching gain from data
    assert vp.row(4, 4).latency_mean_s < rows[3].latency_mean_s  # core gain from data


def test_a_measured_single_cell_keeps_its_numbers():
    vp = VariantProfile("m", [_row("m", 2, 1, 0.2)])
    assert vp.row(2, 1).latency_mean_s == 0.2 and vp.row(2, 1).source == "measured"
    assert vp.row(4, 1).latency_mean_s == pytest.approx(0.4)  # linear in the batch: no fixed cost assumed


def _pipeline(tmp_path: Path, profile_rows: str) -> Path:
    (tmp_path / "profile.csv").write_text(HEADER + profile_rows)
    (tmp_path / "pipeline.yaml").write_text(
        """
name: fitted
sla: {seconds: 4.0, percentile: 99}
objective: {accuracy: pas, alpha: 10, beta: 0.05, gamma: 1.0e-6}
caps: {batch_sizes: [1, 2, 4, 8], cores: [1], max_replicas: 40}
profile: profile.csv
stages:
  - name: translate
    variants:
      - {name: mt-large, accuracy: 0.9}
  - name: post
    variants:
      - {name: post-a, accuracy: 1.0}
edges:
  - {from: translate, to: post}
"""
    )
    return tmp_path / "pipeline.yaml"


ROWS = (
    "mt-large,1,1,0.30,0.29,0.36,3.3333,measured\n"
    "post-a,1,1,0.01,0.0095,0.013,100,measured\n"
    "post-a,8,1,0.04,0.038,0.052,200,measured\n"
)


def test_plan_does_not_buy_throughput_with_an_unmeasured_batch(tmp_path: Path):
    pipe = load_pipeline(_pipeline(tmp_path, ROWS))
    plan = plan_pipeline(pipe, 20.0)
    tr = plan.stages["translate"]
    # 20 items/s at 3.33 items/s per replica, whatever the batch: at least 6 (+ headroom) replicas
    assert tr.capacity_rps / tr.config.replicas == pytest.approx(1 / 0.30, rel=1e-4)
    assert tr.config.replicas >= 7
    assert tr.fitted == (tr.config.batch != 1)
    d = json.loads(json.dumps(plan.to_dict(), allow_nan=False))
    assert d["stages"]["translate"]["fitted"] == tr.fitted
    if tr.fitted:
        assert sum("one batch size" in a for a in plan.assumptions) == 1  # said once


def test_measured_only_plans_on_measured_cells(tmp_path: Path):
    pipe = load_pipeline(_pipeline(tmp_path, ROWS))
    plan = plan_pipeline(pipe, 20.0, measured_only=True)
    assert plan.feasible
    assert plan.stages["translate"].config.batch == 1
    assert plan.stages["post"].config.batch in (1, 8)
    assert not any(c.fitted for c in plan.stages.values()) and plan.assumptions == []


def test_measured_only_with_a_stage_without_measured_cells_is_a_clear_error(tmp_path: Path):
    rows = ROWS.replace("mt-large,1,1,0.30,0.29,0.36,3.3333,measured", "mt-large,1,1,0.30,0.29,0.36,3.3333,fitted")
    pipe = load_pipeline(_pipeline(tmp_path, rows))
    with pytest.raises(PipetuneError, match="translate.*no measured"):
        plan_pipeline(pipe, 5.0, measured_only=True)


def test_cli_marks_fitted_cells_and_measured_only(tmp_path: Path):
    from typer.testing import CliRunner

    from pipetune.cli.main import app

    path = _pipeline(tmp_path, ROWS.replace("post-a,8,1,0.04,0.038,0.052,200,measured\n", ""))
    runner = CliRunner()
    r = runner.invoke(app, ["plan", str(path), "--rps", "2", "--json"])
    d = json.loads(r.output)
    flags = {s: v["fitted"] for s, v in d["stages"].items()}
    assert flags == {s: v["batch"] != 1 for s, v in d["stages"].items()}
    r = runner.invoke(app, ["plan", str(path), "--rps", "2", "--measured-only", "--json"])
    d = json.loads(r.output)
    assert all(v["batch"] == 1 and not v["fitted"] for v in d["stages"].values())


def test_table_marks_a_fitted_option_with_a_note_once(tmp_path: Path):
    from io import StringIO

    from rich.console import Console

    from pipetune.cli.plan import render_plan

    # batch sizes 1 and 4 measured for post-a, but only batch 1 for mt-large: the table marks a fitted choice
    table = ProfileTable.parse_csv(HEADER + ROWS)
    assert not any(r.source == "fitted" for r in table.rows)
    pipe = load_pipeline(_pipeline(tmp_path, ROWS))
    plan = plan_pipeline(pipe, 20.0)
    buf = StringIO()
    render_plan(plan, Console(file=buf, width=200))
    out = buf.getvalue()
    fitted = [s for s, c in plan.stages.items() if c.fitted]
    assert ("*" in out) == bool(fitted)
    assert out.count("no batching gain assumed") == (1 if "translate" in fitted else 0)


def test_falling_measured_throughput_caps_fitted_larger_batches():
    # yolov5s-like: items/s 2.6 (b1), 2.26 (b2), 2.05 (b4) on 1 core and the same shape on 2: the monotone law
    # alone would put b8 above b4; the measurements say the batching gain has ended.
    one = [_row("det", 1, 1, 1 / 2.6), _row("det", 2, 1, 2 / 2.26), _row("det", 4, 1, 4 / 2.05)]
    two = [_row("det", 1, 2, 1 / 4.4), _row("det", 2, 2, 2 / 4.05), _row("det", 4, 2, 4 / 2.81)]
    vp = VariantProfile("det", one + two)
    assert vp.row(8, 1).source == "fitted"
    assert vp.row(8, 1).throughput_rps <= 2.05 * (1 + 1e-9)
    assert vp.row(16, 2).throughput_rps <= 2.81 * (1 + 1e-9)
    assert vp.row(8, 4).throughput_rps <= vp.row(4, 4).throughput_rps * (1 + 1e-9)  # core factor only
    assert vp.row(2, 4).latency_mean_s == pytest.approx(vp.law.mean(2, 4))  # within the measured batches: the law


def test_rising_measured_throughput_keeps_the_laws_batching_gain():
    rows = [_row("m", 1, 1, 0.10), _row("m", 4, 1, 0.16)]
    vp = VariantProfile("m", rows)
    assert vp.batch_ceiling == {}
    assert vp.row(8, 1).latency_mean_s == pytest.approx(vp.law.mean(8, 1))
