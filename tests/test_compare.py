"""Training comparisons (``[compare]``, estbench.compare): parsing errors, tidy and complete
training.csv, exact training decreasing the exact objective, determinism, resume per run,
refusals before work, the report's figures (bands per estimator only with several seeds), and
negative controls (gradient ascent raises the recorded objective; another root seed changes the
numbers)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from estbench import compare as C
from estbench.cases import CaseError, load_case, parse_case
from estbench.cli import main
from estbench.compare_results import COLUMNS, TRAINING_CSV, TRAINING_JSON, load_training
from estbench.errors import EstbenchError, MemoryBudgetError
from estbench.report import render_report
from estbench.report.training_report import load_training_data, objective_figure, t_interval
from estbench.results import ResultsError

SBN = """
schema_version = 2
[data]
kind = "two-class"
n = 24
seed = 1
[model]
widths = [2, 2]
init = "random"
seed = 0
[compare]
estimators = {estimators}
seeds = {seeds}
steps = {steps}
record_every = {every}
lr = {lr}
batch_size = {batch}
"""


def sbn_case(tmp_path, *, estimators='["exact", "st", "reinforce"]', seeds=2, steps=12, every=4,
             lr=0.05, batch=8, name="tiny", extra=""):  # fmt: skip
    text = SBN.format(estimators=estimators, seeds=seeds, steps=steps, every=every, lr=lr,
                      batch=batch) + extra  # fmt: skip
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return parse_case(text, name=name, path=path)


def csv_rows(directory):
    return list(csv.DictReader(io.StringIO((directory / TRAINING_CSV).read_text())))


def without_wall(directory):
    return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in csv_rows(directory)]


# ---- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table, message",
    [
        ("seeds = 2\nsteps = 5", "compare.estimators: required key is missing"),
        (
            'estimators = ["st"]',
            "compare.steps: expected exactly one of compare.steps and compare.epochs, got neither",
        ),  # fmt: skip
        ('estimators = ["st"]\nsteps = 5\nepochs = 2', "got both"),
        ('estimators = ["nope"]\nsteps = 5', "compare.estimators[0]"),
        ('estimators = ["vae-st"]\nsteps = 5', "compare.estimators[0]: estimator 'vae-st' handles"),
        (
            'estimators = ["st", "exact", "st"]\nsteps = 5',
            "compare.estimators[2]: 'st' is listed twice (as compare.estimators[0])",
        ),  # fmt: skip
        ('estimators = ["exact", "exact"]\nsteps = 5', "compare.estimators[1]"),
        ('estimators = ["st"]\nsteps = 5\nseeds = 0', "compare.seeds: expected an integer in"),
        ('estimators = ["st"]\nsteps = 5\nseeds = [1, 1]', "compare.seeds: expected distinct"),
        ('estimators = ["st"]\nsteps = 0', "compare.steps: expected a positive integer, got 0"),
        (
            'estimators = ["st"]\nsteps = 5\nrecord_every = 6',
            "compare.record_every: expected at most compare.steps (5)",
        ),  # fmt: skip
        (
            'estimators = ["st"]\nsteps = 5\nmomentum = 0.5',
            "compare.momentum: expected no momentum with optimizer = 'adam'",
        ),  # fmt: skip
        ('estimators = ["st"]\nsteps = 5\noptimizer = "lbfgs"', "compare.optimizer: expected one"),
        ('estimators = ["st"]\nsteps = 5\nlr = -1', "compare.lr: expected a number > 0"),
        ('estimators = ["st"]\nsteps = 5\nbogus = 1', "compare.bogus: unknown key"),
        ('estimators = ["st"]\nsteps = 5\n[sweep]\nseed = [0, 1]', "sweep: a case with [compare]"),
        ('estimators = ["st"]\nsteps = 5\n[training]\nepochs = 3', "training: [compare] trains"),
    ],
)
def test_parsing_errors_name_the_file_and_key(tmp_path, table, message):
    text = (
        """schema_version = 2
[model]
widths = [2]
[compare]
"""
        + table
    )
    path = tmp_path / "bad.toml"
    with pytest.raises(CaseError) as e:
        parse_case(text, name="bad", path=path)
    assert str(e.value).startswith(f"{path}: ")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_compare_case_needs_no_measure_table_and_keeps_its_settings(tmp_path):
    case = sbn_case(tmp_path, extra="quick_steps = 3\n")
    assert case.measure.estimators == ()
    c = case.compare
    assert c is not None and c.seeds == (0, 1) and c.steps == 12 and c.optimizer == "adam"
    listed = parse_case(
        'schema_version = 2\n[model]\nwidths = [2]\n[compare]\nestimators = ["st"]\n'
        "epochs = 2\nseeds = [5, 3]\n",
        name="x",
    )
    assert listed.compare is not None and listed.compare.seeds == (5, 3)
    assert listed.compare.epochs == 2 and listed.compare.steps is None


# ---- running ------------------------------------------------------------------------------


def test_a_tiny_comparison_is_tidy_and_complete(tmp_path):
    case = sbn_case(tmp_path)
    report = C.run_compare(case, tmp_path / "out", progress=False)
    d = report.directory
    assert report.runs_done == 6 and report.errors == []
    text = (d / TRAINING_CSV).read_text()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    rows = csv_rows(d)
    # estimators x seeds x record steps (0, 4, 8, 12) x one quantity (an SBN has no extra columns)
    assert len(rows) == 3 * 2 * 4
    keys = {(r["estimator"], r["seed"], r["step"], r["quantity"]) for r in rows}
    assert len(keys) == len(rows)
    assert {r["step"] for r in rows} == {"0", "4", "8", "12"}
    for r in rows:
        assert math.isfinite(float(r["value"])) and float(r["wall_seconds"]) >= 0
        assert r["evaluations"] == "" if r["estimator"] == "exact" else float(r["evaluations"]) >= 0
    # the same initialisation per seed: step 0 is the same network for every estimator
    for seed in ("0", "1"):
        start = {r["value"] for r in rows if r["seed"] == seed and r["step"] == "0"}
        assert len(start) == 1
    assert len({r["value"] for r in rows if r["step"] == "0"}) == 2  # seeds start apart
    # evaluations: batch points x evals per draw (ST: 1) per step
    st = [r for r in rows if r["estimator"] == "st" and r["seed"] == "0"]
    assert [float(r["evaluations"]) for r in st] == [0.0, 32.0, 64.0, 96.0]
    assert [float(r["epoch"]) for r in st] == [0.0, 32 / 24, 64 / 24, 96 / 24]
    meta, loaded = load_training(d)
    assert loaded == rows
    assert meta["run"]["record_steps"] == [0, 4, 8, 12] and meta["run"]["kind"] == "sbn"
    assert meta["columns"] == [["objective", "exact objective"]]
    assert [(r["estimator"], r["seed"]) for r in meta["runs"]] == [
        (e, s) for e in ("exact", "st", "reinforce") for s in (0, 1)
    ]


def test_exact_training_decreases_the_exact_objective(tmp_path):
    """Full-batch gradient descent (SGD, no momentum) with the exact gradient at a small step:
    every recorded exact objective is below the one before; with Adam the curve falls overall."""
    gd = 'optimizer = "sgd"\nmomentum = 0.0\n'
    case = sbn_case(tmp_path, estimators='["exact"]', seeds=1, steps=40, every=5, lr=0.1,
                    batch=24, extra=gd)  # fmt: skip
    d = C.run_compare(case, tmp_path / "out", progress=False).directory
    values = [float(r["value"]) for r in csv_rows(d)]
    assert len(values) == 9 and values[-1] < values[0] - 0.005
    assert all(b < a for a, b in zip(values, values[1:], strict=False))
    adam = sbn_case(tmp_path, estimators='["exact"]', seeds=2, steps=40, every=5, name="adam")
    d = C.run_compare(adam, tmp_path / "adam", progress=False).directory
    for seed in ("0", "1"):
        values = [float(r["value"]) for r in csv_rows(d) if r["seed"] == seed]
        assert values[-1] < values[0] - 0.01


def test_negative_control_gradient_ascent_raises_the_recorded_objective(tmp_path, monkeypatch):
    """The recorded objective is that of the network being trained: with the exact gradient's
    sign flipped, the same run must go up."""
    real = C._gradient_fn

    def ascent(spec, kind, net):  # noqa: ANN001, ANN202
        g = real(spec, kind, net)
        return lambda pr, gen: -g(pr, gen)

    monkeypatch.setattr(C, "_gradient_fn", ascent)
    case = sbn_case(tmp_path, estimators='["exact"]', seeds=1, steps=20, every=5, batch=24)
    d = C.run_compare(case, tmp_path / "out", progress=False).directory
    values = [float(r["value"]) for r in csv_rows(d)]
    assert values[-1] > values[0] + 0.01


def test_same_seed_same_numbers_and_another_root_seed_differs(tmp_path):
    case = sbn_case(tmp_path)
    a = C.run_compare(case, tmp_path / "a", progress=False).directory
    b = C.run_compare(case, tmp_path / "b", progress=False).directory
    assert without_wall(a) == without_wall(b)
    c = C.run_compare(case, tmp_path / "c", seed=1, progress=False).directory
    changed = [
        (x["estimator"], x["step"])
        for x, y in zip(without_wall(a), without_wall(c), strict=True)
        if x != y
    ]
    assert changed and all(step != "0" for _, step in changed)  # the start does not move


def test_resume_after_deleting_one_run(tmp_path):
    case = sbn_case(tmp_path)
    d = C.run_compare(case, tmp_path / "out", progress=False).directory
    before = without_wall(d)
    runs = sorted((d / C.RUNS_DIR).glob("*.json"))
    assert len(runs) == 6
    kept = {p.name: p.stat().st_mtime_ns for p in runs}
    victim = d / C.RUNS_DIR / C.TrainRun("st", 1).file
    victim.unlink()
    (d / TRAINING_CSV).unlink()
    report = C.run_compare(case, tmp_path / "out", progress=False)
    assert report.runs_done == 1 and report.runs_skipped == 5
    assert without_wall(d) == before
    for p in (d / C.RUNS_DIR).glob("*.json"):
        if p.name != victim.name:
            assert p.stat().st_mtime_ns == kept[p.name]  # finished runs were not redone


def test_an_interrupted_comparison_keeps_finished_runs_and_resumes(tmp_path, monkeypatch):
    case = sbn_case(tmp_path)
    reference = without_wall(C.run_compare(case, tmp_path / "ref", progress=False).directory)
    real = C.train_run
    calls = []

    def interrupted(plan, run, **kw):  # noqa: ANN001, ANN003, ANN202
        calls.append(run)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(plan, run, **kw)

    monkeypatch.setattr(C, "train_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        C.run_compare(case, tmp_path / "out", progress=False)
    d = tmp_path / "out" / "tiny"
    assert len(list((d / C.RUNS_DIR).glob("*.json"))) == 3
    assert not (d / TRAINING_CSV).exists() and not (d / TRAINING_JSON).exists()
    assert not list(d.rglob(".*.tmp"))
    monkeypatch.setattr(C, "train_run", real)
    report = C.run_compare(case, tmp_path / "out", progress=False)
    assert report.runs_done == 3 and report.runs_skipped == 3
    assert without_wall(d) == reference


def test_another_comparison_in_the_directory_is_refused_unless_forced(tmp_path):
    case = sbn_case(tmp_path)
    C.run_compare(case, tmp_path / "out", progress=False)
    with pytest.raises(EstbenchError, match=r"holds the training comparison of another run "
                       r"\(estimators"):  # fmt: skip
        C.run_compare(case, tmp_path / "out", estimators=("st",), progress=False)
    report = C.run_compare(case, tmp_path / "out", estimators=("st",), force=True, progress=False)
    assert report.runs_done == 2
    assert {r["estimator"] for r in csv_rows(report.directory)} == {"st"}


def test_a_mismatched_pair_is_refused(tmp_path):
    d = C.run_compare(sbn_case(tmp_path), tmp_path / "out", progress=False).directory
    (d / TRAINING_CSV).write_text((d / TRAINING_CSV).read_text()[:-30])
    with pytest.raises(ResultsError, match="does not match training.json"):
        load_training(d)


def test_oversized_work_is_refused_before_starting(tmp_path):
    case = sbn_case(tmp_path, name="big")
    with pytest.raises(EstbenchError, match=r"big.toml: compare: the comparison is estimated at"):
        C.plan_compare(case, tmp_path / "out", time_budget=1e-3)
    with pytest.raises(MemoryBudgetError, match=r"big.toml: compare: the exact objective"):
        C.plan_compare(case, tmp_path / "out", memory_budget=16)
    assert not (tmp_path / "out").exists()


def test_a_vae_comparison_records_the_kinds_exact_columns(tmp_path):
    text = """schema_version = 2
[model]
kind = "sbvae"
widths = [3]
data = "synthetic"
n_points = 12
dim = 5
[compare]
estimators = ["exact", "vae-rloo"]
seeds = [0]
steps = 4
record_every = 2
batch_size = 6
"""
    case = parse_case(text, name="vae", path=tmp_path / "vae.toml")
    d = C.run_compare(case, tmp_path / "out", progress=False).directory
    meta, rows = load_training(d)
    assert [k for k, _ in meta["columns"]] == ["objective", "elbo", "log_likelihood", "kl_gap"]
    by = {(r["estimator"], r["step"], r["quantity"]): float(r["value"]) for r in rows}
    for e in ("exact", "vae-rloo"):
        for step in ("0", "2", "4"):
            assert by[(e, step, "objective")] == pytest.approx(-by[(e, step, "elbo")], abs=1e-12)
            assert by[(e, step, "kl_gap")] >= -1e-12


# ---- report -------------------------------------------------------------------------------


def _bands(fig):  # noqa: ANN001, ANN202
    labels = [c.get_label() for ax in fig.axes for c in ax.collections]
    return [label for label in labels if label.startswith("_band:")]


def test_report_draws_a_band_per_estimator_with_several_seeds(tmp_path):
    case = sbn_case(tmp_path)
    d = C.run_compare(case, tmp_path / "out", progress=False).directory
    data = load_training_data(d)
    for x in ("step", "wall"):
        fig = objective_figure(data, x)
        assert fig is not None
        assert sorted(_bands(fig)) == ["_band:exact", "_band:reinforce", "_band:st"]
        lines = [ln.get_label() for ax in fig.axes for ln in ax.lines]
        assert sorted(lines) == ["_line:exact", "_line:reinforce", "_line:st"]
    files = render_report(d)
    assert {p.name for p in files.figures} == {"training_vs_steps.png", "training_vs_wall.png"}
    md = files.markdown.read_text()
    assert "## Training comparison" in md and "95 % t-interval" in md
    assert "| `st` | 2 of 2 |" in md


def test_one_seed_has_no_band_and_says_so(tmp_path):
    case = sbn_case(tmp_path, seeds="[4]")
    d = C.run_compare(case, tmp_path / "out", progress=False).directory
    fig = objective_figure(load_training_data(d), "step")
    assert fig is not None and _bands(fig) == []
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "one seed" in legend
    md = render_report(d).markdown.read_text()
    assert "(one seed: no interval)" in md and "no band is drawn" in md


def test_t_interval():
    mean, low, high = t_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302652729749464 / math.sqrt(3), rel=1e-9)
    assert mean - low == pytest.approx(high - mean)
    one = t_interval(np.array([5.0]))
    assert one[0] == 5.0 and math.isnan(one[1]) and math.isnan(one[2])


# ---- the command --------------------------------------------------------------------------


def test_cli_runs_a_comparison_and_a_measurement_in_one_case(tmp_path, capsys):
    extra = '[measure]\nestimators = ["st", "reinforce"]\ndraws = 100\nM = [1, 10]\n'
    case = sbn_case(tmp_path, name="both", extra=extra)
    assert case.compare is not None and case.measure.estimators == ("st", "reinforce")
    out = tmp_path / "out"
    assert main(["run", str(case.path), "--out", str(out), "--no-progress"]) == 0
    d = out / "both"
    for name in ("results.csv", "results.json", TRAINING_CSV, TRAINING_JSON, "report.md"):
        assert (d / name).is_file()
    md = (d / "report.md").read_text()
    assert "## Training comparison" in md and "Leaderboard" in md
    assert (d / "figures" / "training_vs_steps.png").is_file()
    printed = capsys.readouterr().out
    assert "training runs: 6 trained, 0 already done" in printed
    # a rerun resumes both: nothing is recomputed
    assert main(["run", str(case.path), "--out", str(out), "--no-progress"]) == 0
    assert "training runs: 0 trained, 6 already done" in capsys.readouterr().out


def test_cli_estimators_replace_a_compare_only_cases_estimators(tmp_path, capsys):
    case = sbn_case(tmp_path, name="only")
    out = tmp_path / "out"
    args = ["run", str(case.path), "--out", str(out), "--no-progress", "--no-report"]
    assert main([*args, "--estimators", "exact,st"]) == 0
    meta = json.loads((out / "only" / TRAINING_JSON).read_text())
    assert meta["run"]["estimators"] == ["exact", "st"]
    assert main([*args, "--estimators", "exact,vae-st"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("estbench: error: ") and "'vae-st'" in err


# ---- the shipped comparison cases ---------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["train-compare", "vae-train-compare"])
def test_the_shipped_comparison_cases_validate_and_fit_quickly(tmp_path, name):
    case = load_case(ROOT / "cases" / f"{name}.toml")
    assert case.compare is not None and len(case.compare.seeds) == 3
    assert "exact" in case.compare.estimators
    quick = C.plan_compare(case, tmp_path, quick=True)
    assert quick.steps < C.plan_compare(case, tmp_path).steps
    assert len(quick.record_steps) <= C.QUICK_RECORDS + 1


def test_the_sbn_comparison_case_runs_quick(tmp_path):
    case = load_case(ROOT / "cases" / "train-compare.toml")
    report = C.run_compare(case, tmp_path, quick=True, progress=False)
    assert report.runs_done == 15 and report.errors == []
    meta, rows = load_training(report.directory)
    assert meta["run"]["estimators"] == ["exact", "st", "reinforce", "disarm", "rloo(k=2)"]
    assert (report.directory / C.RUNS_DIR / C.TrainRun("rloo(k=2)", 0).file).is_file()
