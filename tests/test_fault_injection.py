"""Fault injection: a run killed (SIGKILL) at any write boundary never leaves a half-written
results pair that reads as complete, and the rerun of the same command finishes it, byte for byte
as an uninterrupted run.

A write boundary is an ``os.replace`` into the output directory: every file a run writes is
renamed into place (run.json, the training snapshots, the point files, results.csv, results.json,
then the report's figures, report.md and report.html). An instrumented, uninterrupted run counts
them (so the test follows the code); then for each boundary k a process runs the same command
with ``os.replace`` patched to SIGKILL itself just before, or just after, its k-th rename into the
directory: into an empty directory and with ``--force`` over another run's complete results
(before every rename, and after the last), and with the report (before its first and its last
rename). What the killed run left is checked (every file whole and one run's; results.csv and
results.json read as a pair only when they are one run's; ``estbench report`` renders that pair
or fails with one ``estbench: error:`` line), then the command is rerun in-process: exit 0,
results.csv byte-identical to the uninterrupted run's, finished points kept, no temporary file
left.

The killed runs are the children of one subprocess, which imports estbench and makes one run
first, then forks a child per kill (two at a time): a fresh interpreter per kill costs about 2 s
here, a warm fork about 0.1 s. The report's figures are not rasterised, in the killed runs or
here (``unsaved_figure``): that takes about 10 s and is the report tests' business; the figure
files are still written atomically, so their renames remain boundaries.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest

import estbench
from estbench.cli import main
from estbench.results import ResultsError, load_results

CASE = """\
schema_version = 1
description = "fault-injection sweep: two training snapshots x two estimators"
[data]
kind = "xor"
n = 6
seed = 3
[model]
widths = [2]
coding = "pm1"
init = "random"
scale = 1.3
[training]
epochs = 2
measure_at = [1, 2]
batch_size = 3
[measure]
estimators = ["st", "reinforce"]
draws = 200
M = [1, 5]
bootstrap = 10
"""
NAME = "sweep"  # the case's name: its file's stem
POINTS = 2


def unsaved_figure(fig, *, svg: bool = False) -> dict[str, bytes]:  # noqa: ANN001
    """The report's figure_files without the rasterising (module docstring)."""
    import matplotlib.pyplot as plt

    plt.close(fig)
    return {suffix: b"" for suffix in ((".svg", ".png") if svg else (".png",))}


# One subprocess for all the killed runs. argv[1]: a JSON list of jobs [K, WHEN, OUT, ARGV, LOG];
# argv[2]: the arguments of a run it makes first, uninterrupted, so that each child starts warm
# (an in-process run takes 0.1 s here, the first in a process 1 s). Per job a forked child sends
# its output to LOG, patches os.replace to SIGKILL itself at its K-th rename into OUT, BEFORE or
# AFTER the rename, and runs estbench's ARGV. Prints the JSON list of the children's exit codes
# (-9: killed by SIGKILL).
KILLER = (
    """\
import contextlib, io, json, os, signal, sys, traceback
from unittest import mock
from estbench.cli import main
"""
    + "from pathlib import Path\n\n\n"
    + inspect.getsource(unsaved_figure)
    + """

def child(k, when, out, argv, log):
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    out = os.path.realpath(out)
    real_replace, count = os.replace, 0

    def replace(src, dst, *args, **kwargs):
        nonlocal count
        mine = os.path.realpath(os.fspath(dst)).startswith(out + os.sep)
        count += mine
        if mine and count == k and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if mine and count == k and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace
    with mock.patch("estbench.report.render.figure_files", unsaved_figure):
        return main(argv)


jobs, running, codes = json.loads(sys.argv[1]), {}, {}
with mock.patch("estbench.report.render.figure_files", unsaved_figure):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(json.loads(sys.argv[2])) == 0  # warm: the lazy imports happen once, here
for i, job in enumerate(jobs):
    if len(running) == 2:
        pid, status = os.wait()
        codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = child(*job)
        except BaseException:
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    running[pid] = i
while running:
    pid, status = os.wait()
    codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
print(json.dumps([codes[i] for i in range(len(jobs))]))
"""
)


def run_args(case: Path, out: Path, *extra: str) -> list[str]:
    """The command: ``--no-report`` unless ``extra`` has ``--report`` (not an estbench option)."""
    report = "--report" in extra
    options = [e for e in extra if e != "--report"] + ([] if report else ["--no-report"])
    return ["run", str(case), "--out", str(out), "--no-progress", *options]


def cli(argv: list[str]) -> int:
    """``estbench.cli.main`` in-process, with ``unsaved_figure`` (module docstring)."""
    with mock.patch("estbench.report.render.figure_files", unsaved_figure):
        return main(argv)


@dataclass(frozen=True)
class Results:
    """A complete run's results.csv and the rows of its point files."""

    csv: bytes
    rows: dict[str, list[dict[str, object]]]
    seed: int


def results_of(directory: Path, seed: int) -> Results:
    rows = {
        p.name: json.loads(p.read_text())["rows"] for p in (directory / "points").glob("*.json")
    }
    return Results((directory / "results.csv").read_bytes(), rows, seed)


@dataclass(frozen=True)
class Baseline:
    case: Path
    new: Results  # the uninterrupted run's (seed 0)
    old: Results  # another run's (seed 1), in the directory that a --force run replaces
    old_directory: Path
    renames: tuple[str, ...]  # the uninterrupted run's rename targets, relative to --out
    report_renames: tuple[str, ...]  # the same with the report


def counted_run(argv: list[str], out: Path) -> tuple[str, ...]:
    """Run ``argv`` in-process; the targets of its renames into ``out``, in order."""
    renames: list[str] = []
    real_replace = os.replace
    out = out.resolve()

    def counting(src, dst, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        real_replace(src, dst, *args, **kwargs)
        target = Path(os.path.realpath(os.fspath(dst)))
        if target.is_relative_to(out):
            renames.append(target.relative_to(out).as_posix())

    with mock.patch.object(os, "replace", counting):
        assert cli(argv) == 0
    return tuple(renames)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    root = tmp_path_factory.mktemp("fault")
    case = root / f"{NAME}.toml"
    case.write_text(CASE)
    renames = counted_run(run_args(case, root / "baseline"), root / "baseline")
    with_report = counted_run(run_args(case, root / "report", "--report"), root / "report")
    assert cli(run_args(case, root / "old", "--seed", "1")) == 0
    new, old = results_of(root / "baseline" / NAME, 0), results_of(root / "old" / NAME, 1)
    assert new.csv != old.csv
    assert (root / "report" / NAME / "results.csv").read_bytes() == new.csv
    return Baseline(case, new, old, root / "old", renames, with_report)


def test_the_run_renames_every_file_into_place_in_the_documented_order(baseline):
    """The boundaries the kills target: run.json first, the results pair after the points, the
    report after the pair."""
    assert baseline.renames == (
        f"{NAME}/run.json",
        f"{NAME}/checkpoints/w2_seed0_epoch1.npz",
        f"{NAME}/checkpoints/w2_seed0_epoch2.npz",
        f"{NAME}/points/checkpoint=1.json",
        f"{NAME}/points/checkpoint=2.json",
        f"{NAME}/results.csv",
        f"{NAME}/results.json",
    )
    n = len(baseline.renames)
    report = baseline.report_renames
    assert report[:n] == baseline.renames
    assert report[-2:] == (f"{NAME}/report.md", f"{NAME}/report.html")
    assert all(r.startswith(f"{NAME}/figures/") for r in report[n:-2]) and len(report) > n + 2


@dataclass(frozen=True)
class Kill:
    """A killed run: its --out, its command's extra options, exit code and output."""

    out: Path
    extra: tuple[str, ...]
    returncode: int
    log: str
    pristine: Path  # a copy of --out as the killed run left it


# (scenario, k, before|after) -> the kill
Kills = dict[tuple[str, int, str], Kill]
SCENARIOS = {  # scenario: the command's extra options (run_args)
    "fresh": (),  # an empty --out
    "force": ("--force",),  # over a copy of another run's (seed 1) directory
    "report": ("--report",),  # an empty --out, with the report
}


@pytest.fixture(scope="module")
def kills(baseline: Baseline, tmp_path_factory: pytest.TempPathFactory) -> Kills:
    """Every kill of the tests below, run by one subprocess (module docstring, KILLER)."""
    root = tmp_path_factory.mktemp("killed")
    n, n_report = len(baseline.renames), len(baseline.report_renames)
    # Just after rename k < n, a run has left what it leaves just before rename k + 1, less that
    # rename's temporary file (nothing is written between but through a rename): so "after" only
    # for the last rename, after which the run leaves no temporary file at all.
    plan = [(s, k, "before") for s in ("fresh", "force") for k in range(1, n + 1)]
    plan += [("fresh", n, "after"), ("force", n, "after")]
    # The report's renames: before the first (a figure) and before the last (report.html).
    plan += [("report", k, "before") for k in (n + 1, n_report)]
    warm = run_args(baseline.case, root / "warm", "--report")
    jobs: list[list[Any]] = []
    for scenario, k, when in plan:
        out = root / f"{scenario}-{when}-{k}"
        if scenario == "force":
            shutil.copytree(baseline.old_directory, out)
        argv = run_args(baseline.case, out, *SCENARIOS[scenario])
        jobs.append([k, when, str(out), argv, f"{out}.log"])
    package_root = Path(estbench.__file__).resolve().parent.parent
    path = os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, json.dumps(jobs), json.dumps(warm)],
        env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    codes = json.loads(proc.stdout)
    killed: Kills = {}
    for (s, k, w), job, code in zip(plan, jobs, codes, strict=True):
        where, log = Path(str(job[2])), Path(str(job[4]))
        pristine = where.with_name(f"{where.name}-pristine")
        shutil.copytree(where, pristine)
        killed[s, k, w] = Kill(where, SCENARIOS[s], code, log.read_text(), pristine)
    return killed


def check_killed_state(directory: Path, runs: tuple[Results, ...], capsys) -> int:  # noqa: ANN001
    """What a killed run leaves is whole or refused, never half-written or mixed: every file
    under its final name is complete and one of ``runs``'; results.csv and results.json are read
    as a pair only when both are one run's, and ``estbench report`` renders that pair or fails
    with one error line. Returns how many point files it left."""
    if (directory / "run.json").exists():
        assert json.loads((directory / "run.json").read_text())["signature"]["seed"] in (0, 1)
    for point in directory.glob("points/*.json"):
        rows = json.loads(point.read_text())["rows"]
        assert any(rows == r.rows[point.name] for r in runs), point
    for npz in directory.glob("checkpoints/*.npz"):
        with np.load(npz) as z:
            assert {"W0", "b0", "W1", "b1", "X", "Y"} <= set(z.files), npz
    if (directory / "results.csv").exists():
        assert (directory / "results.csv").read_bytes() in {r.csv for r in runs}
    for name, end in (("report.md", "\n"), ("report.html", "</html>\n")):
        if (directory / name).exists():
            assert (directory / name).read_text().endswith(end), name
    try:
        meta, rows = load_results(directory)
    except ResultsError:
        complete = False
    else:  # read as complete: it must be one run's pair, CSV and JSON
        complete = True
        csv = (directory / "results.csv").read_bytes()
        (run,) = (r for r in runs if r.csv == csv)
        assert meta["run"]["seed"] == run.seed and meta["case"]["name"] == NAME
        assert len(rows) == csv.count(b"\n") - 1
    capsys.readouterr()
    code = cli(["report", str(directory)])
    out, err = capsys.readouterr()
    if complete:
        assert code == 0, err
        assert f"estbench report: {NAME}" in (directory / "report.md").read_text()
    else:
        assert code == 1, out + err
        assert err.count("\n") == 1 and err.startswith("estbench: error:"), err
    return len(list(directory.glob("points/*.json")))


def rerun_after_kills(
    baseline: Baseline,
    kills: Kills,
    scenario: str,
    runs: tuple[Results, ...],
    capsys,  # noqa: ANN001
) -> None:
    """For each kill of ``scenario``: it died by SIGKILL, what it left is whole or refused
    (``check_killed_state``), and the rerun of its command gives the uninterrupted run's
    bytes, leaving no temporary file anywhere."""
    renames = baseline.report_renames if scenario == "report" else baseline.renames
    checked = 0
    for (name, k, when), kill in kills.items():
        if name != scenario:
            continue
        label = f"{scenario}: killed {when} rename {k} of {len(renames)} ({renames[k - 1]})"
        assert kill.returncode == -signal.SIGKILL, f"{label}: exit {kill.returncode}\n{kill.log}"
        directory = kill.out / NAME
        try:
            finished = check_killed_state(directory, runs, capsys)
        except Exception as e:  # noqa: BLE001 - any failure, named with the kill
            raise AssertionError(f"{label}: {type(e).__name__}: {e}") from e
        assert cli(run_args(baseline.case, kill.out, *kill.extra)) == 0, label
        out = capsys.readouterr().out
        if "--force" not in kill.extra:  # finished points are kept, not recomputed
            done = f"{POINTS - finished} computed, {finished} already done"
            assert f"{NAME}: {done}" in out, f"{label}: {out}"
        assert (directory / "results.csv").read_bytes() == baseline.new.csv, label
        assert load_results(directory)[0]["run"]["seed"] == 0, label
        if "--report" in kill.extra:
            assert (directory / "report.html").read_text().endswith("</html>\n"), label
        stray = sorted(p.name for p in kill.out.rglob("*.tmp"))
        assert not stray, f"{label}: temporary files left after the rerun: {stray}"
        checked += 1
    assert checked >= 2


def test_a_run_killed_at_any_write_boundary_is_finished_by_its_rerun(baseline, kills, capsys):
    """Into an empty directory, killed just before each rename and just after the last."""
    rerun_after_kills(baseline, kills, "fresh", (baseline.new,), capsys)


def test_a_run_replacing_another_runs_results_never_leaves_a_mixed_pair(baseline, kills, capsys):
    """--force over a directory that holds another run's (seed 1) complete results, killed just
    before each rename and after the last: what is left reads as one run's pair or not at all, and
    the rerun gives the uninterrupted run's bytes."""
    runs = (baseline.new, baseline.old)
    rerun_after_kills(baseline, kills, "force", runs, capsys)


def test_a_run_killed_while_writing_its_report_keeps_its_results(baseline, kills, capsys):
    """Killed before the report's first rename (a figure) and before its last (report.html):
    the results pair is complete, and the rerun writes the report."""
    rerun_after_kills(baseline, kills, "report", (baseline.new,), capsys)


class StrayTemporaries(AssertionError):
    """Temporary files that a rerun left behind."""


@pytest.mark.parametrize(
    "scenario, target",
    [
        pytest.param(
            "fresh",
            "checkpoints/",
            id="training-snapshot",
        ),
        pytest.param(
            "report",
            "figures/",
            id="report-figure",
        ),
    ],
)
def test_a_rerun_removes_the_temporary_files_of_a_killed_write(
    baseline, kills, tmp_path, capsys, scenario, target
):
    """Killed before the first rename into ``target``: the rerun (and ``estbench report``)
    leave no temporary file behind."""
    renames = baseline.report_renames if scenario == "report" else baseline.renames
    k = next(k for k, name in enumerate(renames, 1) if name.startswith(f"{NAME}/{target}"))
    kill = kills[scenario, k, "before"]
    left = sorted(p.name for p in kill.pristine.rglob(f"{target}*.tmp"))
    assert len(left) == 1, left  # the temporary file of the rename the kill prevented
    out = tmp_path / "rerun"
    shutil.copytree(kill.pristine, out)
    assert cli(run_args(baseline.case, out, *kill.extra)) == 0
    assert cli(["report", str(out / NAME)]) == 0
    capsys.readouterr()
    stray = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.tmp"))
    if stray:
        raise StrayTemporaries(f"left after the rerun and `estbench report`: {stray}")
