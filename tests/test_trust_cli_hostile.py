"""Hostile input to every command, through the real entry point (`pipetune.cli.main.run`).

The commands are found by walking the typer app, so a new command (or option) is covered without editing this file:
each of its numeric options is driven with values outside the range it declares (`pipetune.cli.options`), each
output path with a folder / a file / a place under a file, and each input path with a missing file, a folder and
a non-UTF-8 file. Whatever is typed, the CLI answers with a non-zero exit (2: bad input), one `error:` line that
names the flag or the file, and no traceback.

Bounded: in the value tests every command body is replaced by a guard that raises `BodyRan`, so nothing (a Ray
cluster for `serve`/`demo`, training, a load test) can start; the value must be refused while the command line is
parsed. The input-file tests run the bodies, with the heavy entry points (a simulation, training, a server's
metadata request, the experiment runner, the profiler) replaced by guards too: the bad file must be refused first.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipetune import example_path
from pipetune.cli import options
from pipetune.cli.main import app, run

SRC = Path(__file__).resolve().parents[1] / "src" / "pipetune"
RUNNER = CliRunner()
SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


# ---- the commands, found by walking the app ------------------------------------------------------------------------
def _walk(cmd: Any, path: tuple[str, ...] = ()) -> Any:
    subs = getattr(cmd, "commands", None)
    if subs:
        for name, sub in sorted(subs.items()):
            yield from _walk(sub, (*path, name))
    else:
        yield path, cmd


COMMANDS: dict[tuple[str, ...], Any] = dict(_walk(typer.main.get_command(app)))


def _parser(p: Any) -> Any:
    return getattr(getattr(getattr(p, "type_descriptor", None), "parameter_info", None), "parser", None)


def _annotation(p: Any) -> Any:
    return getattr(getattr(p, "type_descriptor", None), "annotation", None)


def _flag(p: Any) -> str:
    return max(p.opts, key=len)


def _is_option(p: Any) -> bool:
    return type(p).__name__.endswith("Option")


def _params(kind: tuple[type, ...]) -> list[tuple[tuple[str, ...], Any]]:
    return [(name, p) for name, cmd in COMMANDS.items() for p in cmd.params if isinstance(_parser(p), kind)]


NUMERIC = _params((options.Range, options.Counts))
OUTPUTS = _params((options.OutFile, options.OutDir))
INPUTS = [
    (name, p) for name, cmd in COMMANDS.items() for p in cmd.params if _annotation(p) is Path and _parser(p) is None
]


# ---- running the CLI -----------------------------------------------------------------------------------------------
class BodyRan(BaseException):
    """A command body started: the value under test got through parsing."""


class WorkStarted(BaseException):
    """A command reached its heavy work with the bad input under test."""


def _command_infos(t: typer.Typer) -> Any:
    yield from t.registered_commands
    for g in t.registered_groups:
        yield from _command_infos(g.typer_instance)


@contextlib.contextmanager
def bodies_guarded() -> Any:
    """Every command body raises BodyRan (the signature, hence the options, stay the command's)."""

    def guard(cb: Any) -> Any:
        @functools.wraps(cb)
        def body(*a: Any, **kw: Any) -> None:
            raise BodyRan(cb.__name__)

        return body

    infos = list(_command_infos(app))
    saved = [i.callback for i in infos]
    try:
        for i, cb in zip(infos, saved):
            i.callback = guard(cb)
        yield
    finally:
        for i, cb in zip(infos, saved):
            i.callback = cb


def cli(*args: str) -> tuple[int | str, str, str]:
    """(exit code, stdout, stderr) of `pipetune ARGS` through `run()`; the code is 'body ran' when a guarded body
    started. Exceptions other than SystemExit/BodyRan propagate (a traceback the user would see)."""
    with RUNNER.isolation() as streams, mock.patch.object(sys, "argv", ["pipetune", *args]):
        code: int | str
        try:
            run()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BodyRan:
            code = "body ran"
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return code, out, err


def _valid_number(r: options.Range) -> str:
    lo = r.ge if r.ge is not None else (r.gt + (1 if r.kind is int else 1e-3) if r.gt is not None else None)
    hi = r.le if r.le is not None else (r.lt - (1 if r.kind is int else 1e-3) if r.lt is not None else None)
    for x in (lo, hi, 1, 0.5, 0, 10):
        if x is not None and _accepts(r, str(r.kind(x))):
            return str(r.kind(x))
    raise AssertionError(f"no valid value found for {r}")


def _accepts(parser: Any, value: str) -> bool:
    try:
        parser(value)
    except typer.BadParameter:
        return False
    return True


def _dummies(cmd: Any, tmp: Path, skip: Any = None) -> list[str]:
    """Values for the required parameters (the body never runs, so they only have to parse)."""
    (tmp / "any.txt").write_text("1\n")
    args: list[str] = []
    for p in cmd.params:
        if not p.required or p is skip:
            continue
        par = _parser(p)
        if isinstance(par, options.Range):
            v = _valid_number(par)
        elif isinstance(par, options.OutFile):
            v = str(tmp / "out.file")
        elif isinstance(par, options.OutDir):
            v = str(tmp / "out.dir")
        elif _annotation(p) is Path:
            v = str(tmp / "any.txt")
        else:
            v = "x"
        args += [f"{_flag(p)}={v}"] if _is_option(p) else [v]
    return args


def _bad_values(r: Any) -> list[str]:
    """Values outside the declared range: bounds crossed, non-finite, not numbers, empty."""
    junk = ["nan", "inf", "-inf", "1e400", "", "abc", "0x10", "1,5", "--", "1 2"]
    if isinstance(r, options.Counts):
        a = r.allowed
        return ["", "abc", "0", "-3", "9-1", "1-", str(int((a.le or 1e6) + 1)), "1.5", "nan", "1,,x"]
    out = list(junk)
    if r.kind is int:
        out += ["1.5", "1e3", "1e308"]
    if r.ge is not None:
        out += [str(r.kind(r.ge - 1)), "-1e308"]
    if r.gt is not None:
        out += [str(r.kind(r.gt)), str(r.kind(r.gt - 1)), "-1e308"]
    if r.le is not None:
        out += [str(r.kind(r.le + 1)), "1e308", str(10**30)]
    if r.lt is not None:
        out += [str(r.kind(r.lt)), "1e308"]
    return [v for v in out if not _accepts(r, v)]


def _assert_refused(code: Any, out: str, err: str, *names: str) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err, err
    assert err.startswith("error:"), err
    assert len(err.strip().splitlines()) == 1, err  # one line
    assert any(n in err for n in names), (names, err)


# ---- the table is used everywhere ------------------------------------------------------------------------------
def test_the_walk_finds_every_command():
    names = {" ".join(n) for n in COMMANDS}
    for expected in ("plan", "simulate", "serve", "demo", "loadtest", "experiment run", "experiment report",
                     "trace build", "trace synth", "predictor train", "predictor eval", "profile measure",
                     "profile import", "accuracy", "bench optimizer", "bench simulator", "bench serving"):  # fmt: skip
        assert expected in names
    assert len(NUMERIC) > 40 and len(OUTPUTS) > 10 and len(INPUTS) > 10


def test_every_number_declares_its_range():
    bare = [
        f"{' '.join(name)} {_flag(p)}"
        for name, cmd in COMMANDS.items()
        for p in cmd.params
        if _annotation(p) in (int, float) and not isinstance(_parser(p), options.Range)
    ]
    assert bare == [], "declare these with pipetune.cli.options.number(..., allowed=RANGE)"


def test_every_output_path_is_checked_at_parse_time():
    words = ("out", "output", "log", "plot", "export", "out_dir")
    loose = [
        f"{' '.join(name)} {_flag(p)}"
        for name, cmd in COMMANDS.items()
        for p in cmd.params
        if p.name in words and not isinstance(_parser(p), (options.OutFile, options.OutDir))
    ]
    assert loose == [], "declare these with pipetune.cli.options.out_file / out_dir"


def test_the_bounds_agree_with_the_library():
    from pipetune.loadgen.loadtest import MAX_CONCURRENCY
    from pipetune.loadgen.schedule import HARD_MAX_REQUESTS

    assert options.MAX_CONCURRENCY == MAX_CONCURRENCY and options.HARD_MAX_REQUESTS == HARD_MAX_REQUESTS


def test_the_ranges_show_in_help():
    code, out, _ = cli("simulate", "--help")
    assert code == 0 and "a number > 0" in " ".join(out.split())


# ---- values: refused while parsing, before any work ---------------------------------------------------------------
@SETTINGS
@given(data=st.data())
def test_a_value_outside_its_range_is_refused_before_any_work(data, tmp_path):
    name, p = data.draw(st.sampled_from(NUMERIC), label="option")
    r = _parser(p)
    value = data.draw(
        st.one_of(
            st.sampled_from(_bad_values(r)),
            st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=10),
            st.floats().map(repr),
            st.integers(min_value=-(10**40), max_value=10**40).map(str),
        ),
        label="value",
    )
    args = [*name, *_dummies(COMMANDS[name], tmp_path, skip=p), f"{_flag(p)}={value}"]
    with bodies_guarded():
        code, out, err = cli(*args)
    if _accepts(r, value):  # inside the range: parsing lets it through to the (guarded) body
        assert code == "body ran", (args, code, err)
    else:
        _assert_refused(code, out, err, _flag(p), *p.opts)
        assert "not" in err or "give" in err, err  # says what is allowed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_several_bad_values_at_once_name_one_of_them(data, tmp_path):
    name = data.draw(st.sampled_from(sorted({n for n, _ in NUMERIC})), label="command")
    mine = [p for n, p in NUMERIC if n == name]
    picks = st.lists(st.sampled_from(range(len(mine))), min_size=1, max_size=min(4, len(mine)), unique=True)
    chosen = [mine[i] for i in data.draw(picks, label="options")]
    args = [*name, *_dummies(COMMANDS[name], tmp_path)]
    args = [a for a in args if not any(a.startswith(_flag(p) + "=") for p in chosen)]
    for p in chosen:
        args.append(f"{_flag(p)}={data.draw(st.sampled_from(_bad_values(_parser(p))))}")
    with bodies_guarded():
        code, out, err = cli(*args)
    _assert_refused(code, out, err, *(o for p in chosen for o in p.opts))


@pytest.mark.parametrize("name, p", OUTPUTS, ids=[f"{' '.join(n)} {_flag(p)}" for n, p in OUTPUTS])
def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(name, p, tmp_path):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-folder").mkdir()
    wrong = tmp_path / ("a-folder" if isinstance(_parser(p), options.OutFile) else "a-file")
    for bad in (wrong, tmp_path / "a-file" / "under-a-file", ""):
        args = [*name, *_dummies(COMMANDS[name], tmp_path, skip=p), f"{_flag(p)}={bad}"]
        with bodies_guarded():
            code, out, err = cli(*args)
        _assert_refused(code, out, err, *p.opts)


# ---- input files: refused by the loader, before any work ----------------------------------------------------------
SYNTH = str(example_path("synthetic"))
URL = "http://127.0.0.1:9"  # nothing listens: a request would fail (and is guarded anyway)
# How each input path is reached: the command's args with X for the path under test. A new input path needs a line
# here (test_every_input_path_is_driven says so).
INPUT_CASES: dict[tuple[str, str], list[str]] = {
    ("accuracy", "spec"): ["accuracy", "X"],
    ("bench optimizer", "from_json"): ["bench", "optimizer", "--from-json", "X"],
    ("experiment report", "folder"): ["experiment", "report", "X"],
    ("experiment run", "file"): ["experiment", "run", "X"],
    ("loadtest", "trace"): ["loadtest", "--url", URL, "--trace", "X", "--model", "m"],
    ("loadtest", "pipeline"): ["loadtest", "--url", URL, "--pattern", "bursty", "--pipeline", "X"],
    ("plan", "pipelines"): ["plan", "X", "--rps", "10"],
    ("plan", "runtime_profile"): ["plan", SYNTH, "--rps", "10", "--runtime-profile", "X"],
    ("suggest-sla", "pipeline"): ["suggest-sla", "X"],
    ("predictor eval", "trace"): ["predictor", "eval", "-p", "reactive", "--trace", "X"],
    ("predictor eval", "shared"): ["predictor", "eval", "-p", "reactive", "--shared", "X"],
    ("predictor eval", "lstm_model"): ["predictor", "eval", "-p", "lstm", "--lstm-model", "X"],
    ("predictor eval", "quantile_model"): ["predictor", "eval", "-p", "quantile-lstm", "--quantile-model", "X"],
    ("predictor train", "trace"): ["predictor", "train", "--trace", "X", "-o", "OUT/m.pt"],
    ("profile measure", "spec"): ["profile", "X"],
    ("profile runtime", "spec"): ["profile", "runtime", "X"],
    ("profile import", "files"): ["profile", "import", "generic", "X", "-o", "OUT/p.csv"],  # FILE=... strings
    ("serve", "pipelines"): ["serve", "X", "--export", "OUT/serve.yaml"],
    ("serve", "resume"): ["serve", SYNTH, "--resume", "X"],
    ("serve", "plan"): ["serve", SYNTH, "--plan", "X", "--export", "OUT/serve.yaml"],
    ("simulate", "pipeline"): ["simulate", "X", "--seconds", "120"],
    ("trace build", "directory"): ["trace", "build", "X", "-o", "OUT/c.txt"],
    ("trace cut", "trace"): ["trace", "cut", "X", "-o", "OUT/c.txt"],
    ("trace info", "trace"): ["trace", "info", "X"],
    ("trace patterns", "trace"): ["trace", "patterns", "X"],
}
FOLDER_INPUTS = {("experiment report", "folder"), ("trace build", "directory"), ("predictor eval", "shared")}
# Inputs that may not exist yet: a missing one is not an error (`serve --resume LOG` with no log yet starts as usual
# and writes its decisions there).
MAY_BE_MISSING = {("serve", "resume")}


def test_every_input_path_is_driven():
    missing = {(" ".join(n), p.name) for n, p in INPUTS} - INPUT_CASES.keys()
    assert missing == set(), "add a line to INPUT_CASES for each"


@pytest.fixture
def heavy_work_guarded(monkeypatch):
    def guard(*a: Any, **kw: Any) -> None:
        raise WorkStarted

    import importlib

    for module, name in (
        ("pipetune.experiments.runner", "simulate"),
        ("pipetune.experiments.runner", "run_experiment"),
        ("pipetune.loadgen.loadtest", "fetch_metadata"),  # the first request to the server
        ("pipetune.optimizer.bench", "run_optimizer_benchmark"),
        ("pipetune.profiler.pipeline", "profile_pipeline"),
        ("pipetune.profiler.accuracy", "measure_accuracy"),
    ):
        monkeypatch.setattr(importlib.import_module(module), name, guard)
    from pipetune.predictors.lstm import IPALSTM

    monkeypatch.setattr(IPALSTM, "fit", guard)


@pytest.mark.parametrize("kind", ["missing", "wrong kind", "not UTF-8"])
@pytest.mark.parametrize("case", sorted(INPUT_CASES), ids=lambda c: f"{c[0]} {c[1]}")
def test_a_bad_input_file_is_one_error_line(case, kind, tmp_path, heavy_work_guarded):
    folder = case in FOLDER_INPUTS
    if kind == "not UTF-8" and folder:
        pytest.skip("a folder has no encoding")
    if kind == "missing" and case in MAY_BE_MISSING:
        pytest.skip("a missing file is a first start here, not an error")
    if kind == "missing":
        x = tmp_path / "missing-input"
    elif kind == "wrong kind":
        x = tmp_path / "input-thing"
        x.write_text("1\n") if folder else x.mkdir()
    else:
        x = tmp_path / "input.bin"
        x.write_bytes(b"name: \xff\xfe\x00 bad\n")
    args = [str(x) if a == "X" else a.replace("OUT", str(tmp_path)) for a in INPUT_CASES[case]]
    code, out, err = cli(*args)
    assert code == 2, (args, code, out, err)
    assert "Traceback" not in out + err, err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert x.name in err or "utf-8" in err.lower(), err


# ---- the issue's cases ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, flag",
    [
        (["simulate", SYNTH, "--interval", "0"], "--interval"),
        (["simulate", SYNTH, "--drop-limit", "0"], "--drop-limit"),
        (["simulate", SYNTH, "--seed", "-1"], "--seed"),
        (["simulate", SYNTH, "--seconds", "99999999999"], "--seconds"),
        (["bench", "optimizer", "--instances", "0"], "--instances"),
        (["bench", "optimizer", "--stages", "abc"], "--stages"),
        (["bench", "optimizer", "--variants", "0-3"], "--variants"),
        (["bench", "simulator", "--seeds", "0"], "--seeds"),
        (["predictor", "train", "--trace", SYNTH, "-o", "m.pt", "--lr", "-1"], "--lr"),
        (["predictor", "train", "--trace", SYNTH, "-o", "m.pt", "--batch-size", "0"], "--batch-size"),
        (["predictor", "train", "--trace", SYNTH, "-o", "/", "--epochs", "1"], "--output"),
        (["serve", SYNTH, "--rps", "inf"], "--rps"),
        (["serve", SYNTH, "--switch-reserve", "1"], "--switch-reserve"),
        (["loadtest", "--url", URL, "--pattern", "bursty", "--duration", "1e9"], "--duration"),
        (["demo", "--num-cpus", "0"], "--num-cpus"),
        (["plan", SYNTH, "--rps", "nan"], "--rps"),
        (["trace", "synth", "bursty", "-o", "/", "--seed", "1"], "--output"),
    ],
    ids=lambda v: " ".join("PIPELINE" if a == SYNTH else a for a in v) if isinstance(v, list) else v,
)
def test_the_issues_values_are_refused_before_any_work(args, flag):
    with bodies_guarded():
        _assert_refused(*cli(*args), flag)


BUNDLED = sorted(glob.glob(str(SRC / "examples" / "**" / "pipeline.yaml"), recursive=True))


def test_the_bundled_pipelines_are_found():
    assert len(BUNDLED) >= 8 and any("/paper/" in p for p in BUNDLED)


@pytest.mark.parametrize("pipeline", BUNDLED, ids=lambda p: p.split("examples/")[1])
def test_plan_at_an_infeasible_load_answers_exit_1_fast(pipeline):
    t0 = time.perf_counter()
    code, out, err = cli("plan", pipeline, "--rps", "1e12")
    wall = time.perf_counter() - t0
    assert code == 1, (out, err)
    assert "infeasible (capacity:" in " ".join(out.split()) and "best-effort fallback" in out
    assert wall < 5.0, f"{wall:.2f} s"  # measured: 5-8 ms of solve, <= 0.1 s a call once imported
    code, out, err = cli("plan", pipeline, "--rps", "1e12", "--json")
    assert code == 1, err
    result = json.loads(out)
    assert result["feasible"] is False and result["binding"].startswith("capacity:") and "fallback" in result


def test_a_feasible_plan_still_exits_0():
    code, out, _ = cli("plan", SYNTH, "--rps", "10", "--json")
    assert code == 0 and json.loads(out)["feasible"] is True


@pytest.mark.parametrize("replicas", ["-2", "0"])
def test_rim_replicas_below_one_is_refused(replicas):
    _assert_refused(*cli("plan", SYNTH, "--rps", "10", "--policy", "rim", "--replicas", replicas), "--replicas")


def test_replicas_beyond_the_cap_or_without_rim_is_refused():
    code, out, err = cli("plan", SYNTH, "--rps", "10", "--policy", "rim", "--replicas", "1000")
    _assert_refused(code, out, err, "--replicas")
    assert "caps.max_replicas" in err
    code, out, err = cli("plan", SYNTH, "--rps", "10", "--replicas", "3")
    _assert_refused(code, out, err, "--replicas")
    assert "rim" in err
    code, out, _ = cli("plan", SYNTH, "--rps", "10", "--policy", "rim", "--replicas", "3", "--json")
    assert code == 0 and {c["replicas"] for c in json.loads(out)["stages"].values()} == {3}


def test_predictor_eval_damping_0_is_refused_not_windows_missing():
    code, out, err = cli("predictor", "eval", "--damping", "0", "-p", "reactive")
    _assert_refused(code, out, err, "--damping")
    assert "not found" not in out + err


def test_predictor_eval_missing_shared_is_an_error_not_a_fallback(tmp_path):
    code, out, err = cli("predictor", "eval", "-p", "reactive", "--shared", str(tmp_path))
    _assert_refused(code, out, err, "--shared")


def test_profile_unknown_variant_names_it_and_the_known_ones(heavy_work_guarded):
    code, out, err = cli("profile", str(example_path("digits")), "--variants", "svc,nope")
    _assert_refused(code, out, err, "--variants")
    assert "'nope'" in err and "svc" in err and "knn" in err
    code, out, err = cli("accuracy", str(example_path("digits")), "--variants", "nope")
    _assert_refused(code, out, err, "--variants")


def test_profile_budget_must_be_finite(heavy_work_guarded):
    for budget in ("nan", "inf", "0", "abc"):
        _assert_refused(*cli("profile", str(example_path("digits")), "--budget", budget), "--budget")


def test_experiment_with_failed_runs_exits_1_and_says_how_many(tmp_path, monkeypatch):
    import yaml

    from pipetune.experiments import worker

    real = worker._run_task

    def flaky(task: Any) -> dict:
        if task.get("system") == "broken":
            raise RuntimeError("this run breaks")
        return real(task)

    monkeypatch.setattr(worker, "_run_task", flaky)
    exp = {
        "name": "flaky",
        "pipeline": "example:synthetic",
        "workloads": [{"name": "bursty", "synthetic": "bursty", "seconds": 120, "peak": 10}],
        "systems": [
            {"name": "fine", "policy": "ipa", "predictor": "reactive"},
            {"name": "broken", "policy": "fa2-low", "predictor": "reactive"},
        ],
        "calibration": None,
    }
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(exp))
    code, out, err = cli("experiment", "run", str(tmp_path / "e.yaml"), "--out", str(tmp_path / "o"),
                         "--workers", "1", "--no-figures")  # fmt: skip
    assert code == 1, (out, err)
    assert "1 of 2 runs failed" in err and "this run breaks" in out
    assert "Traceback" not in out + err
    assert (tmp_path / "o" / "report.md").exists()


@pytest.mark.parametrize(
    "content, says",
    [
        (b"{bad", "corrupt JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[]", "not the results.json"),
        (b'{"experiment": {}, "runs": []}', "missing or malformed"),
    ],  # fmt: skip
)
def test_experiment_report_of_a_bad_results_file(tmp_path, content, says):
    (tmp_path / "results.json").write_bytes(content)
    code, out, err = cli("experiment", "report", str(tmp_path))
    _assert_refused(code, out, err, "results.json")
    assert says in err


# ---- the exit codes ------------------------------------------------------------------------------------------------
def test_usage_errors_are_one_error_line():
    for args in (["plan", "--bogus"], ["nocommand"], ["plan"], ["plan", SYNTH, "--rps", "abc"]):
        code, out, err = cli(*args)
        assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1, (args, err)
        assert "--help" in err  # where to read the usage


def test_no_arguments_shows_the_help():
    code, out, err = cli()
    assert code == 2 and "Usage" in out + err and "Traceback" not in out + err


def test_ctrl_c_exits_130():
    info = next(i for i in _command_infos(app) if i.callback.__name__ == "plan_cmd")
    real = info.callback

    @functools.wraps(real)
    def interrupted(*a: Any, **kw: Any) -> None:
        raise KeyboardInterrupt

    with mock.patch.object(info, "callback", interrupted):
        code, _, _ = cli("plan", SYNTH, "--rps", "1")
    assert code == 130


def test_a_solver_error_exits_1():
    from pipetune.cli.main import exit_code_for
    from pipetune.errors import PipetuneError, SolverError

    assert exit_code_for(SolverError("HiGHS failed")) == 1 and exit_code_for(PipetuneError("bad")) == 2
