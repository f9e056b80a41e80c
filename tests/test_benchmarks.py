"""The asv suite in benchmarks/ runs: each benchmark's set-up (setup_cache included) and one call
of every benchmark method, at its first (cheapest) parameters and with the workloads shrunk
(ESTBENCH_ASV_SMOKE=1), so that a broken benchmark fails the tests as well as `asv check`."""

from __future__ import annotations

import importlib
import inspect
import itertools
import json
import pkgutil
import re
from pathlib import Path

import pytest

import benchmarks

ROOT = Path(__file__).resolve().parents[1]
PREFIXES = ("time_", "peakmem_", "mem_", "track_", "timeraw_")


def benchmark_classes() -> list[tuple[str, type]]:
    found = []
    for info in pkgutil.iter_modules(benchmarks.__path__):
        module = importlib.import_module(f"benchmarks.{info.name}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and any(m.startswith(PREFIXES) for m in dir(cls)):
                found.append((f"{info.name}.{name}", cls))
    return found


CLASSES = benchmark_classes()


def test_the_suite_covers_the_issue():
    names = {n for n, _ in CLASSES}
    assert {
        "exact.ExactGradient",
        "exact.ExactGradientSeedNet",
        "exact.ExactGradientWide",
        "estimators.EstimatorDraws",
        "estimators.SeedStudyDraws",
        "end_to_end.DefaultCase",
        "accuracy.EstimatorAccuracy",
        "accuracy.ExactAccuracy",
        "weights.WeightExactGradient",
        "weights.WeightEstimatorDraws",
        "sbvae.SBVAEExactGradient",
    } <= names
    grid = dict(CLASSES)["exact.ExactGradient"].params
    assert min(grid[0]) == 2 and max(grid[0]) == 12 and min(grid[1]) == 1 and max(grid[1]) == 8
    conf = json.loads(re.sub(r"^\s*//.*$", "", (ROOT / "asv.conf.json").read_text(), flags=re.M))
    assert conf["repo"] == "." and conf["benchmark_dir"] == "benchmarks"


def test_benchmarks_use_only_the_public_api():
    """Imports from estbench name only its public modules: the package, estbench.api (the
    notebook API), estbench.cli (the command line), estbench.kinds.weights (Bernoulli
    weights) and estbench.kinds.sbvae (Bernoulli-latent VAEs)."""
    for path in (ROOT / "benchmarks").glob("*.py"):
        for line in path.read_text().splitlines():
            m = re.match(r"\s*(?:from|import)\s+(estbench[\w.]*)", line)
            if m:
                assert m.group(1) in (
                    "estbench",
                    "estbench.api",
                    "estbench.cli",
                    "estbench.kinds.weights",
                    "estbench.kinds.sbvae",
                ), (path, line)


@pytest.mark.parametrize(("name", "cls"), CLASSES, ids=[n for n, _ in CLASSES])
def test_benchmark_runs(name, cls, monkeypatch, tmp_path):
    monkeypatch.setenv("ESTBENCH_ASV_SMOKE", "1")
    monkeypatch.chdir(tmp_path)  # asv runs benchmarks in a scratch directory
    params = getattr(cls, "params", [])
    if params and not isinstance(params[0], list | tuple):
        params = [params]
    first = next(itertools.product(*params)) if params else ()
    bench = cls()
    args = (bench.setup_cache(), *first) if hasattr(bench, "setup_cache") else first
    if hasattr(bench, "setup"):
        bench.setup(*args)
    try:
        for method in sorted(m for m in dir(cls) if m.startswith(PREFIXES)):
            value = getattr(bench, method)(*args)
            if method.startswith("track_"):
                assert isinstance(value, float) and value == value, (method, value)
    finally:
        if hasattr(bench, "teardown"):
            bench.teardown(*args)
