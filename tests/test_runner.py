"""Runs: tidy results, determinism, resume after interruption, failures recorded per row."""

from __future__ import annotations

import json
import math

import pytest
import torch

import estbench.runner as runner_module
from estbench.api import load_results, run
from estbench.cases import parse_case
from estbench.cli import main
from estbench.estimators import Estimator
from estbench.estimators.registry import get_estimator
from estbench.kinds.sbn.exact import exact_gradient
from estbench.kinds.sbn.model import Problem
from estbench.measure import MeasureOptions, measure
from estbench.results import COLUMNS, METRICS, ResultsError, load_json
from estbench.runner import run_case

from .conftest import random_problem

TINY = """
schema_version = 1
[data]
kind = "xor"
n = 6
seed = 3
[model]
width = 2
coding = "pm1"
head = "logistic"
init = "random"
scale = 1.3
[sweep]
depth = [1, 2]
tau = [0.5, 1.0]
[measure]
estimators = ["st", "reinforce", "concrete"]
draws = 300
M = [1, 2, 5]
bootstrap = 20
"""


def tiny_case(text: str = TINY):
    return parse_case(text, name="tiny")


def test_results_are_tidy_and_complete(tmp_path):
    report = run_case(tiny_case(), tmp_path, progress=False)
    assert report.points_done == 2 and not report.errors
    text = (tmp_path / "tiny" / "results.csv").read_text()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    df = load_results(tmp_path / "tiny")
    assert set(df["estimator"]) == {"st", "reinforce", "concrete(tau=0.5)", "concrete"}
    assert set(df["depth"]) == {1, 2}
    assert set(df.loc[df["estimator"].str.startswith("concrete"), "tau"]) == {0.5, 1.0}
    assert df.loc[df["estimator"] == "st", "tau"].isna().all()
    assert set(df["layer"]) == {"layer0", "layer1", "layer2", "all"}
    assert set(df["metric"]) <= set(METRICS)
    assert {"rel_bias", "rel_rmse", "cos_mean", "cos_q15", "snr", "z_max"} <= set(df["metric"])
    st = df[(df["estimator"] == "st") & (df["metric"] == "rel_bias")]
    assert set(st["method"]) == {"exact"}  # path estimator on a small net: no sampling error
    conc = df[(df["estimator"] == "concrete") & (df["metric"] == "rel_bias")]
    assert set(conc["method"]) == {"mc"} and conc["ci_low"].notna().all()
    assert df["error"].isna().all()
    meta = load_json(tmp_path / "tiny" / "results.json")
    assert meta["case"]["content"].startswith("\nschema_version = 1")
    assert meta["run"]["seed"] == 0 and meta["environment"]["torch_version"]
    timing = meta["points"][0]["estimators"]["st"]["seconds_per_draw"]
    assert timing > 0


def test_same_seed_same_bytes_other_seed_other_draws(tmp_path):
    run_case(tiny_case(), tmp_path / "a", progress=False)
    run_case(tiny_case(), tmp_path / "b", progress=False)
    run_case(tiny_case(), tmp_path / "c", seed=1, progress=False)
    a, b, c = ((tmp_path / d / "tiny" / "results.csv").read_bytes() for d in "abc")
    assert a == b and a != c


def test_resume_after_interruption(tmp_path, monkeypatch):
    reference = tmp_path / "ref"
    run_case(tiny_case(), reference, progress=False)
    calls = {"n": 0}
    real = runner_module.measure

    def interrupted(*args, **kwargs):  # dies in the middle of the second case point
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "measure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_case(tiny_case(), tmp_path / "run", progress=False)
    points = list((tmp_path / "run" / "tiny" / "points").glob("*.json"))
    assert [p.name for p in points] == ["depth=1.json"]  # the finished point, valid JSON
    json.loads(points[0].read_text())
    assert not list((tmp_path / "run" / "tiny" / "points").glob("*.tmp"))
    monkeypatch.setattr(runner_module, "measure", real)
    report = run_case(tiny_case(), tmp_path / "run", progress=False)
    assert (report.points_done, report.points_skipped) == (1, 1)
    assert (tmp_path / "run" / "tiny" / "results.csv").read_bytes() == (
        reference / "tiny" / "results.csv"
    ).read_bytes()
    forced = run_case(tiny_case(), tmp_path / "run", force=True, progress=False)
    assert forced.points_done == 2


class Exploding(Estimator):
    name = "exploding"
    family = "score-function"
    unbiased = "yes"
    reference = "test"

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        raise RuntimeError("boom")


class NaNs(Exploding):
    name = "nans"

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        return torch.full((n_draws, problem.n_params), math.nan, dtype=torch.float64)


def test_a_failing_estimator_is_recorded_and_the_run_goes_on(tmp_path):
    df = run(tiny_case(), estimators=["st", Exploding(), NaNs()], out=tmp_path, progress=False)
    boom = df[df["estimator"] == "exploding"]
    assert (boom["error"] == "RuntimeError: boom").all() and boom["value"].isna().all()
    nans = df[df["estimator"] == "nans"]
    assert nans["error"].str.contains("NaN or inf").all()
    assert df.loc[df["estimator"] == "st", "error"].isna().all()
    assert (df["estimator"] == "st").sum() > 50


def test_cli_run_exit_codes(tmp_path, capsys):
    case = tmp_path / "tiny.toml"
    case.write_text(
        TINY.replace('"reinforce", "concrete"', '"reinforce"').replace("tau = [0.5, 1.0]\n", "")
    )
    assert main(["run", str(case), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert "tiny: 2 computed, 0 already done" in capsys.readouterr().out
    assert main(["run", str(case), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert "tiny: 0 computed, 2 already done" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(case.read_text().replace("draws = 300", "draws = 'x'"))
    assert main(["run", str(case), str(bad), "--out", str(tmp_path / "p")]) == 1
    assert "bad.toml: measure.draws: expected an integer >= 10" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()  # validated before any work started
    assert main(["run", str(case), "--estimators", "st,nope", "--out", str(tmp_path / "q")]) == 1


def test_results_json_schema_is_checked(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(ResultsError, match="schema_version 99; this estbench reads version 3"):
        load_json(path)


def test_exact_moments_agree_with_monte_carlo():
    """For a path estimator the exact metrics lie within the Monte Carlo intervals (95 % CIs,
    checked on the relative bias and the variance of every layer; fixed seed)."""
    pr = Problem.create(*random_problem((2, 3), seed=5, head="softmax"))
    g = exact_gradient(pr.model, pr.X, pr.Y).flat()
    est = get_estimator("st")
    opts = MeasureOptions(draws=20000, M=(1, 10), bootstrap=50)
    exact = measure(est, pr, g, opts, generator=torch.Generator().manual_seed(1))
    mc = measure(
        est,
        pr,
        g,
        MeasureOptions(**{**opts.__dict__, "exact_moments": False}),
        generator=torch.Generator().manual_seed(2),
    )
    assert exact.exact and not mc.exact

    def pick(m, layer, metric):  # noqa: ANN001, ANN202
        return next(r.as_dict() for r in m.rows if r.layer == layer and r.metric == metric)

    for layer in ("layer0", "layer1", "layer2", "all"):
        for metric in ("rel_bias", "variance"):
            e, r = pick(exact, layer, metric), pick(mc, layer, metric)
            assert e["method"] == "exact" and r["method"] == "mc"
            assert r["ci_low"] <= e["value"] <= r["ci_high"], (layer, metric, e, r)


def test_large_M_without_enough_draws_gives_analytic_rows_only():
    """With S = 30 draws and M up to 100, grouped metrics exist only where S // M >= 2."""
    pr = Problem.create(*random_problem((2, 2), seed=6))
    g = exact_gradient(pr.model, pr.X, pr.Y).flat()
    opts = MeasureOptions(draws=30, M=(1, 10, 15, 16, 100), bootstrap=10, exact_moments=False)
    m = measure(get_estimator("reinforce"), pr, g, opts, generator=torch.Generator().manual_seed(0))
    grouped = {r.M for r in m.rows if r.metric == "rel_rmse_grouped"}
    cos = {r.M for r in m.rows if r.metric == "cos_mean"}
    assert grouped == cos == {1, 10, 15}
    assert {r.M for r in m.rows if r.metric == "rel_rmse"} == {1, 10, 15, 16, 100}
