"""What estbench guarantees (docs/results.md): no silent wrong number, no lost
finished work, one-line errors. Each test here failed on the code before these guarantees."""

from __future__ import annotations

import json
import os

import pytest
import torch

from estbench.cli import main
from estbench.estimators.base import Estimator
from estbench.kinds.sbn.model import Problem
from estbench.report.load import load_report_data
from estbench.results import ResultsError, load_results
from estbench.runner import case_lock, run_case

from .conftest import random_problem
from .test_runner import TINY, tiny_case

# Two points, two cheap estimators, no tau sweep: a run takes about a second.
SMALL = (
    TINY.replace('"st", "reinforce", "concrete"', '"st", "reinforce"')
    .replace("tau = [0.5, 1.0]\n", "")
    .replace("draws = 300", "draws = 200")
)


def write_case(tmp_path, text=SMALL, name="small"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def run_cli(capsys, *args):
    code = main([*map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("estbench: error:"), err
    assert "Traceback" not in err
    return lines[-1]


# ---- never a silent wrong result ---------------------------------------------------------


class Transposed(Estimator):
    """A plugin bug: [P, S] instead of [S, P] (accepted, as garbage rows, before validation)."""

    name = "transposed"
    family = "score-function"
    unbiased = "yes"
    reference = "test"

    def draw(self, problem, n_draws, *, generator, memory_budget=None, context=None):  # noqa: ANN001, ANN201
        return torch.zeros(problem.n_params, n_draws, dtype=torch.float64)

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        raise AssertionError("not used")


class WrongDtype(Transposed):
    name = "wrong-dtype"

    def draw(self, problem, n_draws, *, generator, memory_budget=None, context=None):  # noqa: ANN001, ANN201
        return torch.zeros(n_draws, problem.n_params, dtype=torch.float32)


def test_draws_of_the_wrong_shape_or_dtype_are_refused_naming_the_estimator(tmp_path):
    case = tiny_case(SMALL)
    report = run_case(case, tmp_path, extra_estimators=[Transposed(), WrongDtype()], progress=False)
    _, rows = load_results(report.directory)
    bad = [r for r in rows if r["estimator"] == "transposed"]
    assert bad and all(r["value"] == "nan" for r in bad)
    # depth 1: 2-2-1 network, P = 2*2+2 + 1*2+1 = 9 parameters; caught at the 8 warm-up draws
    assert "draw returned shape [9, 8]; expected [8, 9]" in bad[0]["error"]
    wrong = next(r for r in rows if r["estimator"] == "wrong-dtype")
    assert "dtype float32; expected float64" in wrong["error"]
    assert all(not r["error"] for r in rows if r["estimator"] == "st")
    assert len(report.errors) == 4  # two estimators at two points, recorded, run went on


def test_a_truncated_results_csv_is_refused(tmp_path, capsys):
    code, _, _ = run_cli(
        capsys, "run", write_case(tmp_path), "--out", tmp_path / "o", "--no-progress"
    )
    assert code == 0
    directory = tmp_path / "o" / "small"
    csv = directory / "results.csv"
    text = csv.read_bytes()
    cut = text.rindex(b",", 0, len(text) // 2)
    csv.write_bytes(text[:cut] + b",2.")  # cut in the middle of a row, "2." would read as 2.0
    with pytest.raises(ResultsError, match="results.csv: does not match results.json"):
        load_report_data(directory)
    code, _, err = run_cli(capsys, "report", directory)
    assert code == 1 and "does not match results.json" in one_error_line(err)
    csv.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff" * 10)  # a binary file
    code, _, err = run_cli(capsys, "report", directory)
    assert code == 1 and "results.csv" in one_error_line(err)


def test_a_pair_from_two_runs_is_refused(tmp_path, capsys):
    case = write_case(tmp_path)
    for seed, out in ((0, "a"), (2, "b")):
        assert run_cli(capsys, "run", case, "--out", tmp_path / out, "--seed", seed)[0] == 0
    # As if killed between the two writes: seed 0's CSV beside seed 2's JSON.
    (tmp_path / "b" / "small" / "results.csv").write_bytes(
        (tmp_path / "a" / "small" / "results.csv").read_bytes()
    )
    with pytest.raises(ResultsError, match="a pair from two runs"):
        load_results(tmp_path / "b" / "small")


def test_estimator_lists_that_name_nothing_are_errors(tmp_path, capsys):
    case = write_case(tmp_path)
    for text in (" , ", ""):
        code, _, err = run_cli(capsys, "run", case, "--estimators", text, "--out", tmp_path / "o")
        assert code == 1 and "--estimators: expected a comma-separated list" in one_error_line(err)
    assert not (tmp_path / "o").exists()
    code, _, err = run_cli(capsys, "run", case, "--estimators", "st,st", "--out", tmp_path / "o")
    assert code == 1 and "'st' is listed twice" in one_error_line(err)
    twice = write_case(tmp_path, SMALL.replace('"st", "reinforce"', '"st", "reinforce", "st"'))
    code, _, err = run_cli(capsys, "run", twice, "--out", tmp_path / "o")
    line = one_error_line(err)
    assert code == 1 and "small.toml: measure.estimators[2]: 'st' is listed twice" in line


# ---- never lose finished work ------------------------------------------------------------


def test_quick_writes_beside_a_finished_full_run(tmp_path, capsys):
    case, out = write_case(tmp_path), tmp_path / "o"
    assert run_cli(capsys, "run", case, "--out", out, "--no-report")[0] == 0
    full = (out / "small" / "results.csv").read_bytes()
    code, stdout, _ = run_cli(capsys, "run", case, "--out", out, "--quick", "--no-report")
    assert code == 0 and f"{out / 'small-quick'}/results.csv" in stdout
    assert (out / "small" / "results.csv").read_bytes() == full
    assert json.loads((out / "small-quick" / "results.json").read_text())["run"]["quick"]


def test_another_run_in_the_same_directory_is_refused_unless_forced(tmp_path, capsys):
    case, out = write_case(tmp_path), tmp_path / "o"
    assert run_cli(capsys, "run", case, "--out", out, "--no-report")[0] == 0
    directory = out / "small"
    before = {p: p.read_bytes() for p in directory.rglob("*.json")}
    before[directory / "results.csv"] = (directory / "results.csv").read_bytes()
    for extra, what in (
        (["--estimators", "st"], "estimators ['st', 'reinforce'] -> ['st']"),
        (["--seed", "3"], "seed 0 -> 3"),
    ):
        code, _, err = run_cli(capsys, "run", case, "--out", out, *extra)
        line = one_error_line(err)
        assert code == 1 and what in line and "--force" in line and "nothing was changed" in line
        assert {p: p.read_bytes() for p in before} == before
    edited = write_case(tmp_path, SMALL.replace("seed = 3", "seed = 4"))
    code, _, err = run_cli(capsys, "run", edited, "--out", out)
    assert code == 1 and "the case file changed" in one_error_line(err)
    code, _, _ = run_cli(capsys, "run", case, "--out", out, "--seed", "3", "--force")
    assert code == 0
    assert json.loads((directory / "results.json").read_text())["run"]["seed"] == 3


def test_two_cases_with_one_name_are_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = write_case(tmp_path / "a"), write_case(tmp_path / "b")
    code, _, err = run_cli(capsys, "run", a, b, "--out", tmp_path / "o")
    line = one_error_line(err)
    assert code == 1 and f"{b}: writes to {tmp_path / 'o' / 'small'}" in line and str(a) in line
    assert not (tmp_path / "o").exists()


def test_a_second_run_on_the_same_directory_is_refused_while_the_first_holds_it(tmp_path, capsys):
    case, out = write_case(tmp_path), tmp_path / "o"
    with case_lock(out / "small"):
        code, _, err = run_cli(capsys, "run", case, "--out", out)
    line = one_error_line(err)
    assert code == 1 and f"in use by another estbench run (pid {os.getpid()})" in line
    assert run_cli(capsys, "run", case, "--out", out, "--no-report")[0] == 0  # released


def test_an_oversized_point_is_refused_before_any_point_runs(tmp_path, capsys):
    # The width-20 point is the sweep's last: refused before the first point runs.
    sweep = SMALL.replace("depth = [1, 2]", "depth = [2]\nwidth = [2, 20]").replace(
        "width = 2\n", ""
    )
    sweep = sweep.replace("n = 6", "n = 200")
    code, _, err = run_cli(capsys, "run", write_case(tmp_path, sweep), "--out", tmp_path / "o")
    line = one_error_line(err)
    assert (
        code == 1 and "point depth=2_width=20: its data, network and exact reference need" in line
    )
    assert "--memory-budget" in line and not (tmp_path / "o").exists()
    # Within memory but not within time (2^44 table elements per point): the time budget.
    code, _, err = run_cli(
        capsys,
        "run",
        write_case(tmp_path, sweep.replace("width = [2, 20]", "width = [2, 22]")),
        "--out",
        tmp_path / "o",
        "--memory-budget",
        "64GiB",
    )
    line = one_error_line(err)
    assert code == 1 and "over the time budget of about 24.0 h" in line
    assert "slowest point, depth=2_width=22" in line and "--time-budget" in line
    huge = SMALL.replace("draws = 200", "draws = 1000000000000")
    code, _, err = run_cli(capsys, "run", write_case(tmp_path, huge), "--out", tmp_path / "o")
    line = one_error_line(err)
    assert code == 1 and "1,000,000,000,000 draws of 9 parameters need about" in line
    assert "--memory-budget" in line and not (tmp_path / "o").exists()
    # The advice works: run accepts --memory-budget (here lowered until the small case fails).
    code, _, err = run_cli(
        capsys, "run", write_case(tmp_path), "--out", tmp_path / "o", "--memory-budget", "10KiB"
    )
    assert code == 1 and "over the memory budget of 10.00 KiB" in one_error_line(err)


def test_the_plan_is_printed_before_work(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", write_case(tmp_path), "--out", tmp_path / "o")
    assert code == 0
    assert "estbench: small: 2 points x 2 estimators x 200 draws; estimated peak memory" in err


# ---- one-line errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
        (["--seed", "x"], "argument --seed: expected an integer >= 0, got 'x'"),
        (["--memory-budget", "lots"], "cannot read 'lots' as a size in bytes"),
        (["--time-budget=0h"], "cannot read '0h' as a duration"),
    ],
)
def test_bad_options_give_one_line(tmp_path, capsys, args, expected):
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(write_case(tmp_path)), "--out", str(tmp_path / "o"), *args])
    assert exit_.value.code == 1
    assert expected in one_error_line(capsys.readouterr().err)


def test_unusable_output_paths_fail_before_work_in_one_line(tmp_path, capsys):
    case = write_case(tmp_path)
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "run", case, "--out", tmp_path / "file")
    assert code == 1 and "file: exists and is not a directory" in one_error_line(err)
    code, _, err = run_cli(capsys, "run", case, "--out", tmp_path / "file" / "sub")
    assert code == 1 and "file" in one_error_line(err)
    (tmp_path / "o" / "small" / "results.csv").mkdir(parents=True)
    code, _, err = run_cli(capsys, "run", case, "--out", tmp_path / "o")
    assert code == 1 and "results.csv: exists and is not a regular file" in one_error_line(err)
    assert not (tmp_path / "o" / "small" / "points").exists()  # refused before any work
    (tmp_path / "o" / "small" / "results.csv").rmdir()
    (tmp_path / "o" / "small" / "figures").write_text("x")
    code, _, err = run_cli(capsys, "run", case, "--out", tmp_path / "o")
    assert code == 1 and "figures: exists and is not a directory" in one_error_line(err)


def test_an_interrupted_run_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import estbench.runner as runner_module

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "measure", interrupted)
    code, _, err = run_cli(capsys, "run", write_case(tmp_path), "--out", tmp_path / "o")
    assert code == 130
    assert "interrupted (rerun the same command to resume: finished points are kept)" in err


def test_stray_temporaries_of_a_killed_write_are_cleared(tmp_path, capsys):
    case, out = write_case(tmp_path), tmp_path / "o"
    assert run_cli(capsys, "run", case, "--out", out, "--no-report")[0] == 0
    stray = out / "small" / ".results.json.abc123.tmp"
    stray.write_text("{half")
    assert run_cli(capsys, "run", case, "--out", out, "--no-report")[0] == 0
    assert not stray.exists()
    assert not list(out.rglob("*.tmp"))


def test_case_files_say_what_they_cannot_do(tmp_path, capsys):
    no_tau = SMALL.replace("depth = [1, 2]", "depth = [1]\ntau = [0.5]")
    code, _, err = run_cli(capsys, "run", write_case(tmp_path, no_tau), "--out", tmp_path / "o")
    assert code == 1 and "sweep.tau: none of measure.estimators has a tau" in one_error_line(err)
    big_m = SMALL.replace("M = [1, 2, 5]", "M = [1, 2, 500]")
    code, _, err = run_cli(capsys, "run", write_case(tmp_path, big_m), "--out", tmp_path / "o")
    assert code == 1 and "measure.M: expected values <= measure.draws (200), got 500" in err
    # --estimators without a tau parameter over a tau sweep: said, not silent.
    tau = SMALL.replace('"st", "reinforce"', '"st", "concrete"').replace(
        "depth = [1, 2]", "depth = [1]\ntau = [0.5, 1.0]"
    )
    code, _, err = run_cli(
        capsys, "run", write_case(tmp_path, tau), "--estimators", "st", "--out", tmp_path / "t"
    )
    assert code == 0 and "sweep.tau = [0.5, 1.0] is dropped" in err
    # --quick's 500 draws leave out the grouped metrics at M = 1000: said, not silent.
    more = SMALL.replace("draws = 200", "draws = 2000").replace("M = [1, 2, 5]", "M = [1, 1000]")
    more = more.replace("depth = [1, 2]", "depth = [1]")
    code, _, err = run_cli(
        capsys, "run", write_case(tmp_path, more), "--quick", "--out", tmp_path / "q"
    )
    assert code == 0 and "with 500 draws, rel_rmse_grouped and cos_*" in err
    assert "left out for M = 1000" in err


def test_report_into_unusable_paths_gives_one_line(tmp_path, capsys):
    case, out = write_case(tmp_path), tmp_path / "o"
    assert run_cli(capsys, "run", case, "--out", out, "--no-report")[0] == 0
    (out / "small" / "figures").write_text("not a directory")
    code, _, err = run_cli(capsys, "report", out / "small")
    assert code == 1 and "figures" in one_error_line(err)
    (out / "small" / "figures").unlink()
    (out / "small" / "results.csv").unlink()
    (out / "small" / "results.csv").mkdir()
    code, _, err = run_cli(capsys, "report", out / "small")
    assert code == 1 and "results.csv: cannot read" in one_error_line(err)


class TransposedChunks(Transposed):
    """The same bug in ``_draw``: the base class's chunks are checked before they are joined."""

    name = "transposed-chunks"
    draw = Estimator.draw

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        return torch.zeros(problem.n_params, n_draws, dtype=torch.float64)


def test_a_wrong_chunk_is_named_not_a_size_mismatch(tmp_path):
    from estbench.errors import EstbenchError

    case = tiny_case(SMALL.replace("draws = 200", "draws = 20000"))
    report = run_case(case, tmp_path, extra_estimators=[TransposedChunks()], progress=False)
    _, rows = load_results(report.directory)
    bad = next(r for r in rows if r["estimator"] == "transposed-chunks")
    assert "_draw returned [9, 8] for 8 draws; expected shape [8, 9]" in bad["error"]
    problem = Problem.create(*random_problem((3, 3), seed=0))
    with pytest.raises(EstbenchError, match=r"_draw returned \[\d+, \d+\] for \d+ draws"):
        TransposedChunks().draw(problem, 20000, generator=torch.Generator().manual_seed(0))


def test_a_directory_from_before_run_json_is_not_overwritten(tmp_path, capsys):
    case, out = write_case(tmp_path), tmp_path / "o"
    old = out / "small" / "points" / "depth=1.json"
    old.parent.mkdir(parents=True)
    old.write_text('{"signature": {"format": 0}, "rows": []}\n')
    code, _, err = run_cli(capsys, "run", case, "--out", out)
    line = one_error_line(err)
    assert code == 1 and "or before run.json was kept" in line and "--force" in line
    assert old.read_text() == '{"signature": {"format": 0}, "rows": []}\n'


def test_a_forked_child_does_not_keep_the_case_lock(tmp_path):
    """The report draws figures in forked children; a child outliving its parent (killed while
    rendering) must not keep the case directory locked."""
    import os
    import time

    from estbench.lock import case_lock

    read, write = os.pipe()
    with case_lock(tmp_path):
        pid = os.fork()
        if pid == 0:  # fork's hooks have run by now
            os.write(write, b"1")
            time.sleep(3)
            os._exit(0)
    assert os.read(read, 1) == b"1"
    try:
        with case_lock(tmp_path):  # the child still runs, and holds no lock
            pass
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
