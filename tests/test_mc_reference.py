"""A Monte Carlo reference (``measure.reference = "mc"``, issue 18), validated where the exact
gradient exists (SBNs of widths 4 to 10).

False-fail rates. The reference-vs-exact check is a per-coordinate z-test at alpha = 1e-4 per
block, Bonferroni over the block's coordinates, plus the aggregate statistic at alpha = 1e-4:
at most 2e-4 per block, and 12 blocks are checked (3 points x 4 blocks), so at most 2.4e-3 for
the whole test -- and the seeds are fixed, so a pass stays a pass. The metric comparison allows
2.5 half-widths of the Monte Carlo interval (about 4.9 sd): under the normal approximation about
1e-6 per row, 1e-3 over the few hundred rows compared.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from estbench import mcmetrics as mcm
from estbench import mcref
from estbench import metrics as mt
from estbench.cases import CaseError, load_case
from estbench.errors import EstbenchError, MemoryBudgetError
from estbench.estimators.registry import default_registry
from estbench.problem import get_kind
from estbench.runner import CaseRunner, RunPlan, plan_run, prepare_point, run_case
from estbench.testing import check_estimator

ESTIMATORS = ["st", "psa", "concrete", "mean-field", "disarm", "rloo", "reinforce"]


def _case(
    tmp: Path, reference: str, *, extra: str = "", width: str = "[4, 7, 10]", sub: str = ""
) -> Path:
    """Depth 2, widths 4, 7, 10, 20 data points; the file is always ``mcval.toml`` so that the
    exact and mc runs share their measured streams (seeded by case name and point)."""
    d = tmp / (sub or reference)
    d.mkdir(parents=True, exist_ok=True)
    path = d / "mcval.toml"
    path.write_text(
        f"""name = "mcval"
schema_version = 2
[data]
kind = "two-class"
n = 20
seed = 1
[model]
depth = 2
width = 4
seed = 3
[sweep]
width = {width}
[measure]
estimators = {ESTIMATORS!r}
draws = 2000
M = [1, 10, 100]
bootstrap = 100
reference = "{reference}"
{extra}
""".replace("'", '"')
    )
    return path


def _prepared(case_path: Path, point: dict[str, int], plan: RunPlan) -> object:
    runner = CaseRunner(plan.case, plan.directory, progress=lambda _: None)
    return prepare_point(runner.kind.name, *runner.network(point), plan, point)


def test_the_mc_reference_agrees_with_the_exact_gradient(tmp_path):
    """z_i = (g_ref,i - g_i) / sqrt(lambda_i) within the Bonferroni bound at alpha = 1e-4 per
    block, and (||g_ref - g||^2 - t_r) / sqrt(2 tr Lambda^2) below the aggregate threshold."""
    path = _case(tmp_path, "mc", extra="reference_rel_se = 0.02")
    case = load_case(path)
    plan = plan_run(case, tmp_path / "out")
    kind = get_kind("sbn")
    for point in case.points():
        prep = _prepared(path, point, plan)
        mc = prep.mc
        assert mc is not None and mc.stop == "target"
        assert max(mc.rel_se.values()) <= 0.02
        exact = kind.reference(prep.problem).gradient()
        for block in prep.ref.blocks:
            ref = mc.block(block)
            g = exact[block.slice]
            z = mcm.z_scores(None, g, ref, 1)
            crit = mt.bonferroni_critical(g.numel(), 1e-4)
            assert float(z.abs().max()) < crit, (point, block.name)
            stat = (float((ref.g - g) @ (ref.g - g)) - ref.trace) / math.sqrt(2 * ref.trace_sq)
            assert stat < mt.aggregate_critical(1e-4), (point, block.name, stat)
            # the stated relative SE is what the error is: ||g_ref - g|| / ||g|| ~ rho
            assert float((ref.g - g).norm() / g.norm()) < 5 * ref.rel_se


class Biased(type(default_registry().create("disarm"))):  # type: ignore[misc]
    """DisARM scaled by 1.1: claims unbiasedness but is not (the negative control)."""

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        return 1.1 * super()._draw(problem, n_draws, generator, context)


def test_a_biased_reference_estimator_is_caught(tmp_path, monkeypatch):
    """A biased "reference" fails the validation against the exact gradient; its conformance
    check fails, so the harness would refuse it; one that does not claim unbiasedness is refused
    naming the key."""
    assert not check_estimator(Biased(), raise_on_failure=False).passed
    path = _case(tmp_path, "mc", extra="reference_rel_se = 0.02", width="[6]")
    case = load_case(path)
    plan = plan_run(case, tmp_path / "out")
    monkeypatch.setattr(mcref, "candidates", lambda *a, **k: [Biased()])
    prep = _prepared(path, {"width": 6}, plan)
    exact = get_kind("sbn").reference(prep.problem).gradient()
    ref = prep.mc.block(prep.ref.blocks[-1])  # "all"
    g = exact[prep.ref.blocks[-1].slice]
    stat = (float((ref.g - g) @ (ref.g - g)) - ref.trace) / math.sqrt(2 * ref.trace_sq)
    assert stat > mt.aggregate_critical(1e-4)
    monkeypatch.undo()
    st = 'reference_estimator = "st"'
    bad = load_case(_case(tmp_path, "mc", extra=st, width="[6]", sub="bad"))
    with pytest.raises(EstbenchError, match=r"measure.reference_estimator: 'st' does not claim"):
        plan_run(bad, tmp_path / "out2")  # before any work


def _rows(directory: Path) -> pd.DataFrame:
    return pd.read_csv(directory / "results.csv")


def test_metrics_against_the_mc_reference_agree_with_the_exact_ones(tmp_path):
    """Same measured draws (same case name, seed and points), exact vs mc reference: every
    metric that involves g agrees within 2.5 half-widths of the mc interval (which includes
    the reference's error); the variance rows are identical; the method column says
    mc-reference exactly where g is involved."""
    ex_dir = tmp_path / "ex"
    mc_dir = tmp_path / "mc"
    run_case(load_case(_case(tmp_path, "exact")), ex_dir, progress=False)
    run_case(
        load_case(_case(tmp_path, "mc", extra="reference_rel_se = 0.02")), mc_dir, progress=False
    )
    ex, mc = _rows(ex_dir / "mcval"), _rows(mc_dir / "mcval")
    key = ["width", "estimator", "layer", "metric", "M"]
    both = ex.merge(mc, on=key, suffixes=("_ex", "_mc"), how="outer", indicator=True)
    assert (both["_merge"] == "both").all()
    involves_g = both["metric"].isin(
        [
            "rel_bias",
            "bias_sq",
            "mse",
            "rel_rmse",
            "rel_rmse_cost",
            "rel_rmse_grouped",
            "cos_of_mean",
            "cos_mean",
            "cos_q15",
            "cos_q85",
            "z_max",
            "bias_z",
            "unbiased_test",
        ]
    )
    assert (both.loc[involves_g, "method_mc"] == "mc-reference").all()
    assert (both.loc[~involves_g, "method_mc"] == both.loc[~involves_g, "method_ex"]).all()
    same = both[both["metric"].isin(["variance", "snr", "zero_frac"])]
    assert (same["value_ex"] == same["value_mc"]).all()
    checked = both[involves_g & both["ci_low_mc"].notna() & both["ci_high_mc"].notna()]
    assert len(checked) > 300
    half = (checked["ci_high_mc"] - checked["ci_low_mc"]) / 2
    centre = (checked["ci_high_mc"] + checked["ci_low_mc"]) / 2
    # the distance of the exact-reference value from the mc interval's centre
    off = (checked["value_ex"] - centre).abs() / half.clip(lower=1e-12)
    bad = checked[off > 2.5]
    assert bad.empty, bad[[*key, "value_ex", "value_mc", "ci_low_mc", "ci_high_mc"]]
    # the tests agree on the estimators that are unbiased or clearly biased everywhere
    verdict = both[(both["metric"] == "unbiased_test") & (both["layer"] == "all")]
    for est in ("disarm", "rloo", "reinforce"):
        assert (verdict[verdict["estimator"] == est]["value_mc"] == 1.0).all()
    for est in ("concrete", "mean-field"):
        assert (verdict[verdict["estimator"] == est]["value_mc"] == 0.0).all()


def _smallest_budget(kind, model, n_points) -> int:  # noqa: ANN001
    """The smallest memory budget within which the kind's exact reference fits (bisection)."""
    lo, hi = 1, 1 << 34
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            kind.exact_bytes(model, n_points, mid)
            hi = mid
        except MemoryBudgetError:
            lo = mid + 1
    return lo


def test_auto_picks_exact_within_the_budget_and_mc_beyond(tmp_path):
    small = {
        "measure.draws": 100,
        "measure.bootstrap": 0,
        "measure.M": [1, 10],
        "measure.estimators": ["st", "disarm"],
    }
    case = load_case(_case(tmp_path, "auto", width="[4, 10]"), small)
    kind = get_kind("sbn")
    runner = CaseRunner(case, tmp_path, progress=lambda _: None)
    sizes = []
    for point in case.points():
        model, X, _, _ = runner.initial(point)
        sizes.append(_smallest_budget(kind, model, int(X.shape[0])))
    budget = (sizes[0] + sizes[1]) // 2  # about 0.75 MB: width 4 fits, width 10 does not
    plan = plan_run(case, tmp_path / "out", memory_budget=budget)
    assert [e.reference for e in plan.estimates] == ["exact", "mc"]
    plan = plan_run(case, tmp_path / "out", memory_budget=1 << 30)
    assert [e.reference for e in plan.estimates] == ["exact", "exact"]
    # an exact reference that fits but is estimated to take too long: mc too
    slow = load_case(
        _case(tmp_path, "auto", width="[4, 10]"),
        {**small, "measure.reference_exact_max_seconds": 1e-3},
    )
    plan = plan_run(slow, tmp_path / "out", memory_budget=1 << 30)
    assert [e.reference for e in plan.estimates] == ["exact", "mc"]  # est. 6e-7 s and 2e-3 s
    exact_only = load_case(_case(tmp_path, "exact", width="[4, 10]", sub="ex"), small)
    with pytest.raises(MemoryBudgetError, match="point width=10"):
        plan_run(exact_only, tmp_path / "out", memory_budget=budget)
    fast = {**small, "measure.reference_rel_se": 0.05, "measure.reference_estimator": "disarm"}
    case = load_case(_case(tmp_path, "auto", width="[4, 10]"), fast)
    report = run_case(case, tmp_path / "run", memory_budget=budget, progress=False)
    import json

    meta = json.loads((report.directory / "results.json").read_text())
    assert [p["reference"]["kind"] for p in meta["points"]] == ["exact", "mc"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('reference = "approx"', r"measure.reference: expected one of 'exact', 'mc', 'auto'"),
        ("reference_rel_se = 2", r"measure.reference_rel_se: expected a number in \(0, 1\)"),
        ("reference_max_draws = 10", r"measure.reference_max_draws: expected an integer >= 128"),
        ("reference_max_seconds = -1", r"measure.reference_max_seconds: expected a positive"),
        ('reference_estimator = "nope"', r"measure.reference_estimator: .*nope"),
        ("reference_exact_max_seconds = 0", r"measure.reference_exact_max_seconds: expected"),
        ('reference_candidates = ["disarm", 3]', r"measure.reference_candidates: expected"),
    ],
)
def test_case_file_errors_name_the_file_and_key(tmp_path, line, message):
    path = _case(tmp_path, "mc", extra=line)
    text = path.read_text().replace('reference = "mc"\n', "") if "reference =" in line else None
    if text is not None:
        path.write_text(text)
    with pytest.raises(CaseError, match=message) as info:
        load_case(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_mc_keys_need_an_mc_reference(tmp_path):
    path = _case(tmp_path, "exact", extra="reference_rel_se = 0.05")
    with pytest.raises(CaseError, match="measure.reference_rel_se: only used with"):
        load_case(path)


def test_an_mc_run_is_reproducible_byte_for_byte_and_records_its_reference(tmp_path):
    path = _case(tmp_path, "mc", extra="reference_rel_se = 0.05", width="[5]")
    a = run_case(load_case(path), tmp_path / "a", progress=False)
    b = run_case(load_case(path), tmp_path / "b", progress=False)
    assert (a.directory / "results.csv").read_bytes() == (b.directory / "results.csv").read_bytes()
    import json

    meta = json.loads((a.directory / "results.json").read_text())
    ref = meta["points"][0]["reference"]
    assert ref["kind"] == "mc" and ref["stop"] in mcref.STOPS
    assert ref["draws"] % mcref.BATCHES == 0 and ref["estimator"] in ref["pilot"]
    assert set(ref["rel_se"]) == {"layer0", "layer1", "layer2", "all"}
    info = meta["points"][0]["estimators"]["st"]
    assert set(info["detectable_rel_bias"]) == set(ref["rel_se"])
    assert meta["points"][0]["exact"]["loss"] is None


def test_the_draw_cap_stops_the_reference_and_says_so(tmp_path):
    path = _case(
        tmp_path,
        "mc",
        extra="reference_rel_se = 0.0001\nreference_max_draws = 1000\n"
        'reference_estimator = "disarm"',
        width="[4]",
    )
    case = load_case(path)
    plan = plan_run(case, tmp_path / "out")
    prep = _prepared(path, {"width": 4}, plan)
    assert prep.mc.stop == "max_draws" and prep.mc.draws == 960  # 1000 rounded down to 64s
    assert prep.mc.estimator == "disarm" and prep.mc.pilot == {}


def test_reference_streams_are_independent_of_the_measured_ones():
    """The reference's stream tags differ from every estimator label, so no measured stream
    coincides with it (streams are seeded by (seed, case, point, label))."""
    from estbench.runner import stream_seed

    labels = list(default_registry())
    seeds = {stream_seed(0, "c", "base", label) for label in labels}
    for label in labels:
        assert stream_seed(0, "c", "base", "mc-reference", label) not in seeds
    assert torch.float64 == mcref._Accumulator(3, torch.device("cpu")).mean.dtype


def test_a_dask_run_with_an_mc_reference_matches_the_serial_run(tmp_path):
    """The reference is computed in the prepare task, once per point, its shards spread over the
    workers (at 2 % relative SE the width-5 point needs about 12,000 draws: three shards in its
    last round): the same bytes as a serial run with one torch thread (as Dask's workers
    have)."""
    pytest.importorskip("distributed")
    from estbench import cluster

    path = _case(
        tmp_path,
        "mc",
        extra='reference_rel_se = 0.02\nreference_estimator = "disarm"',
        width="[4, 5]",
    )
    case = load_case(path, {"measure.estimators": ["st", "disarm"], "measure.draws": 300})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = run_case(case, tmp_path / "serial", progress=False)
    finally:
        torch.set_num_threads(threads)
    with cluster.connect(2) as client:
        dask = run_case(case, tmp_path / "dask", progress=False, client=client)
    expected = (serial.directory / "results.csv").read_bytes()
    assert (dask.directory / "results.csv").read_bytes() == expected
    assert b"mc-reference" in expected
    draws = [
        p["reference"]["draws"]
        for p in json.loads((dask.directory / "results.json").read_text())["points"]
    ]
    assert max(draws) > 2 * mcref.SHARD_DRAWS


def test_shards_are_cut_at_fixed_draws_whatever_the_rounds():
    S = mcref.SHARD_DRAWS
    assert mcref.shards(0, 128) == [(0, 128)]
    assert mcref.shards(128, S + 64) == [(128, S - 128), (S, 64)]
    assert mcref.shards(S + 64, 3 * S) == [(S + 64, S - 64), (2 * S, S)]
    # Every draw in exactly one shard, each shard a multiple of BATCHES when the bounds are.
    cuts = mcref.shards(64, 5 * S + 192)
    assert sum(n for _, n in cuts) == 5 * S + 128
    assert all(n % mcref.BATCHES == 0 for _, n in cuts)


def test_the_reference_does_not_depend_on_where_its_shards_are_drawn(tmp_path, monkeypatch):
    """A mapper that draws the shards in reverse order (as workers finishing out of order
    would) gives the same reference, bit for bit: shards and seeds depend on the draws alone,
    and their summaries are merged in order."""
    monkeypatch.setattr(mcref, "SHARD_DRAWS", 256)  # several shards per round at this size
    path = _case(
        tmp_path,
        "mc",
        extra='reference_rel_se = 0.02\nreference_estimator = "disarm"',
        width="[5]",
    )
    case = load_case(path, {"measure.estimators": ["st"], "measure.draws": 100})
    plan = plan_run(case, tmp_path / "out")
    point = {"width": 5}
    calls = []

    def reversed_map(fn, shared, jobs):
        calls.append(len(jobs))
        return [fn(*shared, *job) for job in reversed(jobs)][::-1]

    serial = _prepared(path, point, plan)
    runner = CaseRunner(plan.case, plan.directory, progress=lambda _: None)
    spread = prepare_point(runner.kind.name, *runner.network(point), plan, point, reversed_map)
    assert max(calls) > 1  # some round really had several shards
    a, b = serial.mc, spread.mc
    assert a is not None and b is not None
    assert a.draws == b.draws and a.draws > 256
    assert torch.equal(a.mean, b.mean) and torch.equal(a.lam, b.lam) and torch.equal(a.Y, b.Y)
