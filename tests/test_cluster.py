"""Runs on Dask (estbench/cluster.py): byte-identical to a serial run, resumable, surviving a
worker that dies, refusing workers that differ from the client."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import estbench.cluster as cluster
from estbench.api import run
from estbench.cases import parse_case
from estbench.cli import main
from estbench.errors import EstbenchError
from estbench.kinds.sbn.estimators.score import Reinforce
from estbench.runner import run_case

# Three depths x two checkpoints of one training run each, three estimators: every kind of task
# (train, prepare, cell) and a resume are exercised in a few seconds.
CASE = """
schema_version = 2
[data]
kind = "xor"
n = 8
seed = 3
[model]
width = 2
coding = "pm1"
head = "logistic"
init = "random"
scale = 1.3
seed = 1
[training]
method = "exact"
optimizer = "sgd"
lr = 0.2
epochs = 4
measure_at = [1, 4]
seed = 1
[sweep]
depth = [1, 2]
[measure]
estimators = ["st", "reinforce", "concrete(tau=0.5)"]
draws = 400
M = [1, 10]
bootstrap = 20
"""


def small_case(text: str = CASE):
    return parse_case(text, name="small")


@pytest.fixture(scope="module")
def client():
    with cluster.connect(2) as c:
        yield c


def serial_results(tmp_path: Path, case, **kwargs) -> bytes:
    """results.csv of a serial run with one torch thread, as the workers have."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_case(case, tmp_path / "serial", progress=False, **kwargs)
    finally:
        torch.set_num_threads(threads)
    return (tmp_path / "serial" / case.name / "results.csv").read_bytes()


def test_a_cluster_run_is_byte_identical_to_the_serial_run_and_resumes(tmp_path, client):
    case = small_case()
    expected = serial_results(tmp_path, case)
    out = tmp_path / "dask"
    report = run_case(case, out, progress=False, client=client)
    assert report.points_done == 4 and not report.errors
    directory = out / case.name
    assert (directory / "results.csv").read_bytes() == expected
    assert sorted(p.name for p in (directory / "checkpoints").iterdir()) == [
        "w2-2_seed0_epoch1.npz",
        "w2-2_seed0_epoch4.npz",
        "w2_seed0_epoch1.npz",
        "w2_seed0_epoch4.npz",
    ]
    # an interrupted run: one point file lost; the re-run computes only that point, same bytes
    lost = sorted((directory / "points").iterdir())[0]
    lost.unlink()
    again = run_case(case, out, progress=False, client=client)
    assert (again.points_done, again.points_skipped) == (1, 3)
    assert (directory / "results.csv").read_bytes() == expected


class KillOnce(Reinforce):
    """REINFORCE that kills its own process the first time it draws (marker file)."""

    name = "kill-once"
    marker = ""

    def draw(self, problem, n_draws, **kwargs):  # noqa: ANN001, ANN003, ANN201
        if not os.path.exists(self.marker):
            Path(self.marker).write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().draw(problem, n_draws, **kwargs)


class KillAlways(Reinforce):
    name = "kill-always"

    def draw(self, problem, n_draws, **kwargs):  # noqa: ANN001, ANN003, ANN201
        os.kill(os.getpid(), signal.SIGKILL)
        return super().draw(problem, n_draws, **kwargs)


def _by_value():  # noqa: ANN202
    """Workers cannot import this test module: send its estimator classes by value."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_a_worker_killed_mid_run_is_replaced_and_the_results_are_unchanged(tmp_path, client):
    _by_value()
    text = CASE.replace("[training]", "[nothing]").split("[nothing]")[0] + (
        "[sweep]\ndepth = [1, 2]\n[measure]\nestimators = ['st']\ndraws = 300\nM = [1, 10]\n"
        "bootstrap = 20\n"
    )
    case = small_case(text)
    estimator = KillOnce()
    estimator.marker = str(tmp_path / "marker-serial")
    Path(estimator.marker).write_text("never kill in the serial run")
    expected = serial_results(tmp_path, case, extra_estimators=[estimator])
    estimator.marker = str(tmp_path / "marker")
    report = run_case(
        case, tmp_path / "dask", progress=False, client=client, extra_estimators=[estimator]
    )
    assert Path(estimator.marker).exists()  # a worker did die
    assert not report.errors
    assert (tmp_path / "dask" / "small" / "results.csv").read_bytes() == expected
    # a cell that kills every worker it runs on becomes error rows naming the last one
    one = small_case(text.replace("depth = [1, 2]", "depth = [1]"))
    report = run_case(
        one, tmp_path / "always", progress=False, client=client, extra_estimators=[KillAlways()]
    )
    assert len(report.errors) == 1 and "KilledWorker" in report.errors[0]
    assert "tcp://" in report.errors[0]
    csv = (tmp_path / "always" / "small" / "results.csv").read_text()
    assert "kill-always" in csv and ",st," in csv  # the other estimator's rows are intact


def test_the_notebook_api_takes_a_client(tmp_path, client):
    df = run(small_case(), out=tmp_path, estimators=["st"], client=client)
    assert set(df["estimator"]) == {"st"} and len(set(df["depth"])) == 2


def test_workers_that_differ_from_the_client_are_refused(client, monkeypatch):
    here = cluster.versions()
    assert cluster.version_mismatch(here, {"tcp://w:1": dict(here)}) is None
    message = cluster.version_mismatch(here, {"tcp://w:1": {**here, "torch": "1.0"}})
    assert message is not None and message.startswith("worker tcp://w:1 has torch 1.0, the client")
    # end to end: the real workers answer, the client pretends to run another estbench
    monkeypatch.setattr(cluster, "versions", lambda: {**here, "estbench": "9.9"})
    with pytest.raises(
        EstbenchError, match=r"Dask: worker tcp://\S+ has estbench .*, the client 9.9"
    ):
        cluster.check_workers(client)


def test_a_cell_larger_than_every_worker_is_refused_before_the_run():
    info = {"workers": {"a": {"resources": {"MEMORY": 1e6}}, "b": {"resources": {"MEMORY": 2e6}}}}
    fake = SimpleNamespace(scheduler_info=lambda: info)
    estimates = [
        SimpleNamespace(pid="depth=1", draw_bytes=10**6),
        SimpleNamespace(pid="depth=2", draw_bytes=3 * 10**6),
    ]
    plan = SimpleNamespace(estimates=estimates[:1], case=SimpleNamespace(name="c"))
    annotate = cluster._memory_annotation(fake, plan)  # type: ignore[arg-type]
    assert annotate("depth=1") == {"MEMORY": 1e6}
    plan.estimates = estimates
    with pytest.raises(
        EstbenchError, match=r"c point depth=2: a cell needs about .*MEMORY resource"
    ):
        cluster._memory_annotation(fake, plan)  # type: ignore[arg-type]
    info["workers"]["b"]["resources"] = {}  # a worker without MEMORY: no annotation at all
    assert cluster._memory_annotation(fake, plan)("depth=2") is None  # type: ignore[arg-type]


def test_cli_workers_and_scheduler_errors(monkeypatch, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "default", "--workers", "0"])
    assert exit_info.value.code != 0
    assert "--workers: expected an integer >= 1, got '0'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "distributed", None)  # dask not installed
    code = main(["run", "default", "--quick", "--out", str(tmp_path), "--workers", "2"])
    err = capsys.readouterr().err
    assert code != 0 and "pip install 'estbench[dask]'" in err and "Traceback" not in err


def test_cli_run_with_workers_matches_the_serial_run(tmp_path, capsys):
    path = tmp_path / "small.toml"
    path.write_text(CASE.replace("depth = [1, 2]", "depth = [2]"))
    expected = serial_results(tmp_path, parse_case(path.read_text(), name="small", path=path))
    assert (
        main(
            [
                "run",
                str(path),
                "--out",
                str(tmp_path / "cli"),
                "--workers",
                "2",
                "--no-report",
                "--no-progress",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "running on 2 Dask workers" in err and "Traceback" not in err
    assert (tmp_path / "cli" / "small" / "results.csv").read_bytes() == expected
    meta = json.loads((tmp_path / "cli" / "small" / "results.json").read_text())
    assert meta["run"]["dask_workers"] == 2
