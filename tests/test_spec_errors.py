"""Every spec error names the field and the fix; nothing raises a raw traceback-worthy exception."""

from __future__ import annotations

import copy

import pytest
import yaml

from pipetune.profiles import ProfileError
from pipetune.spec import SpecError, load_pipeline, parse_pipeline


def base() -> dict:
    return {
        "name": "t",
        "sla": {"seconds": 1.0},
        "stages": [
            {"name": "a", "variants": [{"name": "a1", "accuracy": 0.9}]},
            {"name": "b", "variants": [{"name": "b1", "accuracy": 0.8}, {"name": "b2", "accuracy": 0.85}]},
        ],
        "edges": [{"from": "a", "to": "b"}],
    }


def with_(mutate) -> dict:
    d = copy.deepcopy(base())
    mutate(d)
    return d


def test_valid_spec_parses_with_defaults():
    p = parse_pipeline(base())
    assert p.sla.percentile == 99
    assert p.objective.accuracy == "pas"
    assert p.topological_order() == ["a", "b"]
    assert p.load_factors() == {"a": 1.0, "b": 1.0}


@pytest.mark.parametrize(
    "mutate, must_say",
    [
        (lambda d: d["edges"].append({"from": "b", "to": "a"}), ["cycle", "a -> b -> a"]),
        (lambda d: d["edges"].append({"from": "b", "to": "zzz"}), ["edges[1].to", "unknown stage 'zzz'"]),
        (lambda d: d["edges"].append({"from": "a", "to": "a"}), ["self-loop"]),
        (lambda d: d["stages"][0]["variants"][0].update(accuracy=76.1), ["accuracy", "[0, 1]", "0.761"]),
        (lambda d: d["stages"][0]["variants"][0].update(accuracy=-0.1), ["accuracy", "outside [0, 1]"]),
        (lambda d: d["stages"].append(copy.deepcopy(d["stages"][0])), ["repeated", "'a'"]),
        (lambda d: d["stages"][1]["variants"].append({"name": "b1", "accuracy": 0.5}), ["unique", "b1"]),
        (lambda d: d.pop("sla"), ["sla", "required"]),
        (lambda d: d["sla"].update(seconds=0), ["sla.seconds"]),
        (lambda d: d["sla"].update(percentile=100), ["percentile"]),
        (lambda d: d.update(caps={"batch_sizes": []}), ["caps.batch_sizes", "empty"]),
        (lambda d: d.update(caps={"cores": [0, 1]}), ["caps.cores", "positive"]),
        (lambda d: d.update(objective={"accuracy": "geometric"}), ["objective.accuracy"]),
        (lambda d: d.update(objective={"alpha": -1}), ["objective.alpha"]),
        (lambda d: d.update(colour="red"), ["colour", "not a known field"]),
        (lambda d: d["stages"][1].update(variants=[]), ["stages.1.variants"]),
        (lambda d: d["edges"][0].update(multiplicity=0), ["multiplicity"]),
        (lambda d: d.update(sources={"b": 1.0}), ["sources", "incoming edges"]),
        (lambda d: d.update(sources={"a": 1.5}), ["sources.a", "(0, 1]"]),
        (lambda d: d.update(sources={"q": 1.0}), ["sources", "unknown stage 'q'"]),
        (lambda d: d["stages"][1].update(warm_variants=["b1", "bx"]), ["warm_variants", "['bx']", "'b1', 'b2'"]),
        (lambda d: d["stages"][1].update(warm_variants=["b1", "b1"]), ["warm_variants", "repeats"]),
        (
            lambda d: d["stages"][1].update(
                warm_variants=["b1", "b2"], variants=[*d["stages"][1]["variants"], {"name": "warm", "accuracy": 0.1}]
            ),
            ["'warm'", "rename that variant"],
        ),
        # several stages and no `edges:` is never silently read as parallel sources
        (lambda d: d.pop("edges"), ["edges: missing", "2 stages", "{from: a, to: b}", "edges: []"]),
    ],
)
def test_spec_errors_name_field_and_fix(mutate, must_say):
    with pytest.raises(SpecError) as e:
        parse_pipeline(with_(mutate))
    msg = str(e.value)
    for s in must_say:
        assert s in msg, msg


def test_edges_needed_only_where_stages_must_connect():
    """One stage needs no `edges:`; several stages with `edges: []` are independent sources, as written."""
    single = with_(lambda d: (d.pop("edges"), d["stages"].pop(1)))
    assert parse_pipeline(single).topological_order() == ["a"]
    parallel = parse_pipeline(with_(lambda d: d.update(edges=[])))
    assert parallel.source_shares() == {"a": 1.0, "b": 1.0} and parallel.sinks() == ["a", "b"]


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_pipeline(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_pipeline(bad)
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        load_pipeline(notmap)


def write(tmp_path, spec: dict, profile: str | None) -> str:
    if profile is not None:
        (tmp_path / "p.csv").write_text(profile)
        spec["profile"] = "p.csv"
    f = tmp_path / "pipe.yaml"
    f.write_text(yaml.safe_dump(spec))
    return str(f)


HEADER = "variant,batch,cores,latency_mean_s,latency_p50_s,latency_p99_s,throughput_rps\n"


def rows(*variants, lat=0.01):
    return "".join(f"{v},1,1,{lat},{lat},{lat * 1.2},{1 / lat}\n" for v in variants)


def test_missing_profile_names_variant(tmp_path):
    with pytest.raises(ProfileError, match=r"stages\[a\].variants\[a1\].profile"):
        load_pipeline(write(tmp_path, base(), None))
    with pytest.raises(ProfileError, match="does not exist"):
        d = base()
        d["profile"] = "missing.csv"
        f = tmp_path / "x.yaml"
        f.write_text(yaml.safe_dump(d))
        load_pipeline(f)


def test_profile_without_rows_for_a_variant(tmp_path):
    with pytest.raises(ProfileError, match=r"stages\[b\].variants\[b2\].*no rows for this variant"):
        load_pipeline(write(tmp_path, base(), HEADER + rows("a1", "b1")))


def test_empty_and_malformed_profiles(tmp_path):
    with pytest.raises(ProfileError, match="empty"):
        load_pipeline(write(tmp_path, base(), "# only a comment\n"))
    with pytest.raises(ProfileError, match="missing column"):
        load_pipeline(write(tmp_path, base(), "variant,batch\na1,1\n"))
    with pytest.raises(ProfileError, match="line 2.*number"):
        load_pipeline(write(tmp_path, base(), HEADER + "a1,1,1,fast,0.01,0.012,100\n"))
    with pytest.raises(ProfileError, match="latency_mean_s=-0.01 must be a positive"):
        load_pipeline(write(tmp_path, base(), HEADER + "a1,1,1,-0.01,0.01,0.012,100\n"))
    with pytest.raises(ProfileError, match="duplicate row"):
        load_pipeline(write(tmp_path, base(), HEADER + rows("a1", "a1", "b1", "b2")))
    with pytest.raises(ProfileError, match="p99_s < latency_p50_s"):
        load_pipeline(write(tmp_path, base(), HEADER + "a1,1,1,0.01,0.02,0.01,100\n" + rows("b1", "b2")))


def test_unreachable_sla_names_the_stage(tmp_path):
    prof = HEADER + rows("a1", lat=0.2) + rows("b1", "b2", lat=2.0)
    with pytest.raises(SpecError) as e:
        load_pipeline(write(tmp_path, base(), prof))
    msg = str(e.value)
    assert "sla.seconds" in msg and "stage 'b'" in msg and "a -> b" in msg


def test_cli_prints_error_without_traceback(tmp_path):
    import subprocess
    import sys

    d = base()
    d["edges"].append({"from": "b", "to": "a"})
    f = tmp_path / "cyc.yaml"
    f.write_text(yaml.safe_dump(d))
    r = subprocess.run([sys.executable, "-m", "pipetune", "plan", str(f), "--rps", "1"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "cycle" in r.stderr and "Traceback" not in r.stderr
