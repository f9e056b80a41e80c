"""Devices and dtypes: everything an estimator or the exact solver creates follows the problem's
device; float32 is available for the draws and never for the exact reference; a run records
both; CUDA is compared against the CPU where a GPU is present (those tests skip without one)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from estbench import exact_gradient, load_checkpoint
from estbench.cases import CaseError, parse_case
from estbench.cli import main
from estbench.errors import EstbenchError
from estbench.estimators import default_registry
from estbench.kinds.sbn.estimators.ops import PathEstimator
from estbench.kinds.sbn.model import SBN, Problem
from estbench.kinds.sbn.moments import path_moments
from estbench.measure import MeasureOptions, measure
from estbench.runner import run_case, run_settings

from .conftest import random_problem, seed_net_path

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (torch.cuda.is_available())")
without_cuda = pytest.mark.skipif(CUDA, reason="checks the error shown when CUDA is absent")

CASE = """
schema_version = 1
[data]
kind = "xor"
n = 8
seed = 3
[model]
widths = [3, 2]
coding = "pm1"
init = "random"
scale = 1.3
[measure]
estimators = ["st", "psa", "reinforce", "concrete(tau=0.5)", "arm"]
draws = 2000
M = [1, 10]
bootstrap = 20
"""


def seed_problem(n_points: int | None = None) -> Problem:
    """The trained seed network with its data (the first ``n_points`` points, for speed)."""
    ckpt = load_checkpoint(seed_net_path("psa_5-5-5_chk-100.npz"))
    X, Y = ckpt.data()
    return Problem.create(ckpt.model(coding="01"), X[:n_points], Y[:n_points])


def every_variant() -> list[str]:
    """Every registered estimator, and every value of each hyperparameter that has choices."""
    specs = []
    for name, entry in default_registry().items():
        if entry.cls.problem != "sbn":  # weight estimators read a WeightProblem
            continue
        hypers = entry.cls.hyperparameters
        # A learned control (relax, rodeo) trains in a few steps as in a hundred: the device
        # plumbing is the same, at a twentieth of the test's time.
        short = ["train_steps=5"] if "train_steps" in hypers else []
        specs.append(f"{name}({', '.join(short)})" if short else name)
        for key, hyper in hypers.items():
            specs += [
                f"{name}({', '.join([f'{key}={c}', *short])})"
                for c in hyper.choices or ()
                if c != hyper.default
            ]
    return specs


# ---- device plumbing, checked on the CPU with the meta device ---------------------------------
# A meta tensor has a device but no data: mixing it with a CPU tensor (a constant created without
# device=...) raises, so running on "meta" finds every tensor created on the wrong device.


@pytest.fixture
def meta_problem(monkeypatch) -> Problem:
    # Input validation reads values, which meta tensors do not have; the data were checked on
    # the CPU first.
    model, X, Y = random_problem((3, 2), seed=4, n_points=5)
    Xc, Yc = model.check_data(X, Y)
    monkeypatch.setattr(SBN, "check_data", lambda self, X, Y: (X, Y))
    return Problem(model.to(device="meta"), Xc.to("meta"), Yc.to("meta"))


@pytest.mark.parametrize("spec", every_variant())
def test_estimators_create_everything_on_the_problem_device(meta_problem, spec):
    est = default_registry().create(spec)
    # A CPU generator: uniforms are drawn on the generator's device and moved to the problem's.
    draws = est.draw(meta_problem, 3, generator=torch.Generator().manual_seed(0))
    assert draws.device.type == "meta"
    assert draws.shape == (3, meta_problem.n_params)
    assert draws.dtype == torch.float64


def test_exact_computations_stay_on_the_problem_device(meta_problem):
    p = meta_problem
    for budget in (None, 3100):  # whole tables and row blocks
        result = exact_gradient(p.model, p.X, p.Y, memory_budget=budget)
        assert result.flat().device.type == "meta" and result.loss.device.type == "meta"
    moments = path_moments(default_registry().create("psa"), p)
    assert moments.mean.device.type == "meta" and moments.variance.device.type == "meta"


def test_problem_to_keeps_integer_labels():
    model, X, Y = random_problem((2,), seed=1, head="softmax")
    p = Problem.create(model, X, Y)
    q = p.to(dtype=torch.float32)
    assert q.X.dtype == q.model.dtype == torch.float32 and q.Y.dtype == torch.long
    assert torch.equal(q.Y, p.Y) and p.to(dtype=torch.float64) is p


# ---- float32 draws --------------------------------------------------------------------------


def test_float32_arithmetic_moves_path_estimator_means_by_under_1e_4():
    """The arithmetic effect of float32, without sampling error: the exact mean and variance of
    each path estimator's draw, computed in float32, against float64 (seed network)."""
    p = seed_problem(20)
    g = exact_gradient(p.model, p.X, p.Y).flat()
    for spec in ("st", "psa", "reinforce", "muprop", "darn"):
        est = default_registry().create(spec)
        m64 = path_moments(est, p)
        m32 = path_moments(est, p.to(dtype=torch.float32))
        assert m32.mean.dtype == torch.float32
        shift = float((m32.mean.double() - m64.mean).norm() / g.norm())
        assert shift < 1e-4, (spec, shift)  # measured 1e-6 to 1e-5
        T64, T32 = float(m64.variance.sum()), float(m32.variance.double().sum())
        assert abs(T32 - T64) < 1e-4 * T64, spec


@pytest.mark.parametrize("spec", ["st", "concrete(tau=0.1)", "reinforce", "arm", "psa", "rebar"])
def test_float32_draws_agree_with_float64_draws(spec):
    """Same mean per coordinate within sampling error (Bonferroni z over the coordinates)."""
    p = seed_problem()
    est = default_registry().create(spec)
    S = 4000
    d64 = est.draw(p, S, generator=torch.Generator().manual_seed(1))
    d32 = est.draw(p.to(dtype=torch.float32), S, generator=torch.Generator().manual_seed(2))
    assert d32.dtype == torch.float32 and torch.isfinite(d32).all()
    d32 = d32.double()
    se = ((d64.var(0) + d32.var(0)) / S).sqrt()
    z = torch.where(se > 0, (d64.mean(0) - d32.mean(0)) / se.clamp_min(1e-300), 0.0)
    assert float(z.abs().max()) < 4.5  # two-sided 1e-3 over ~70 coordinates


def test_measure_in_float32_keeps_the_reference_in_float64():
    p = seed_problem(20)
    g = exact_gradient(p.model, p.X, p.Y).flat()
    opts = MeasureOptions(draws=3000, M=(1, 10), bootstrap=0)
    rows = {}
    for dtype in (torch.float64, torch.float32):
        for spec in ("psa", "concrete(tau=0.5)"):
            gen = torch.Generator().manual_seed(5)
            est = default_registry().create(spec)
            options = MeasureOptions(**{**opts.__dict__, "dtype": dtype})
            m = measure(est, p, g, options, generator=gen)
            rows[dtype, spec] = {(r.layer, r.metric, r.M): r.as_dict() for r in m.rows}
    # exact moments of a path estimator come from the float64 problem: identical numbers
    for key, r64 in rows[torch.float64, "psa"].items():
        r32 = rows[torch.float32, "psa"][key]
        if r64["method"] == "exact":
            assert r32["value"] == r64["value"], key
    # sampled metrics agree within their sampling error
    for spec in ("psa", "concrete(tau=0.5)"):
        for layer in ("all", "layer3"):
            a = rows[torch.float64, spec][layer, "rel_rmse_grouped", 1]
            b = rows[torch.float32, spec][layer, "rel_rmse_grouped", 1]
            assert abs(a["value"] - b["value"]) < 4 * math.hypot(a["se"], b["se"]), (spec, layer)


def test_run_records_device_and_dtype(tmp_path):
    case = parse_case(CASE, name="devcase")
    run_case(case, tmp_path / "f64", progress=False)
    run_case(case, tmp_path / "f32", progress=False, dtype="float32")
    runs = {}
    for tag in ("f64", "f32"):
        runs[tag] = json.loads((tmp_path / tag / "devcase" / "results.json").read_text())
    assert runs["f64"]["run"]["device"] == runs["f32"]["run"]["device"] == "cpu"
    assert runs["f64"]["run"]["dtype"] == "float64" and runs["f32"]["run"]["dtype"] == "float32"
    assert runs["f32"]["run"]["exact_dtype"] == "float64" and runs["f32"]["run"]["device_name"]
    # the exact reference is the same float64 computation whatever the draws' dtype
    assert runs["f32"]["points"][0]["exact"] == runs["f64"]["points"][0]["exact"]
    # a finished point is not reused for another dtype: refused, or recomputed with force
    with pytest.raises(EstbenchError, match=r"another run \(dtype float64 -> float32\)"):
        run_case(case, tmp_path / "f64", progress=False, dtype="float32")
    report = run_case(case, tmp_path / "f64", progress=False, dtype="float32", force=True)
    assert report.points_done == 1 and report.points_skipped == 0


def test_case_keys_for_device_and_dtype(tmp_path):
    text = CASE.replace("bootstrap = 20", 'bootstrap = 20\ndevice = "cpu"\ndtype = "float32"')
    case = parse_case(text, name="devcase")
    assert (case.measure.device, case.measure.dtype) == ("cpu", "float32")
    assert run_settings(case) == (torch.device("cpu"), torch.float32)
    assert run_settings(case, dtype="float64") == (torch.device("cpu"), torch.float64)
    for key, bad, expected in (
        ("device", "gpu", "expected one of 'cpu', 'cuda', got 'gpu'"),
        ("dtype", "float16", "expected one of 'float64', 'float32', got 'float16'"),
    ):
        path = tmp_path / "bad.toml"
        path.write_text(CASE.replace("bootstrap = 20", f'bootstrap = 20\n{key} = "{bad}"'))
        with pytest.raises(CaseError) as e:
            parse_case(path.read_text(), name="bad", path=path)
        assert str(e.value) == f"{path}: measure.{key}: {expected}"


@without_cuda
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "--device", "cuda", "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("estbench: error: --device: device 'cuda' was asked for, but CUDA is")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "default").exists()  # refused before any work
    path = tmp_path / "gpu.toml"
    path.write_text(CASE.replace("bootstrap = 20", 'bootstrap = 20\ndevice = "cuda"'))
    assert main(["run", str(path), "--out", str(tmp_path), "--no-progress"]) == 1
    assert f"estbench: error: {path}: measure.device: device 'cuda'" in capsys.readouterr().err
    checkpoint = str(seed_net_path("psa_5-5-5_chk-100.npz"))
    assert main(["exact", "--checkpoint", checkpoint, "--device", "cuda"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err


# ---- CUDA against the CPU (skipped without a GPU) ---------------------------------------------


@needs_cuda
def test_cuda_exact_gradient_equals_cpu():
    p = seed_problem()
    cpu = exact_gradient(p.model, p.X, p.Y)
    q = p.to(device="cuda")
    gpu = exact_gradient(q.model, q.X, q.Y)
    assert gpu.flat().device.type == "cuda" and gpu.flat().dtype == torch.float64
    assert float((gpu.flat().cpu() - cpu.flat()).norm() / cpu.flat().norm()) < 1e-12
    assert float(gpu.loss) == pytest.approx(float(cpu.loss), rel=1e-13)
    wide, X, Y = random_problem((10, 10, 10), seed=2, n_points=50)
    budget = 8 << 20  # tables in row blocks
    a = exact_gradient(wide, X, Y, memory_budget=budget).flat()
    b = exact_gradient(wide.to(device="cuda"), X, Y, memory_budget=budget).flat().cpu()
    assert float((a - b).norm() / a.norm()) < 1e-11


@needs_cuda
@pytest.mark.parametrize("spec", every_variant())
def test_cuda_draws_match_cpu_in_distribution(spec):
    p = seed_problem(50)
    q = p.to(device="cuda")
    est = default_registry().create(spec)
    S = 4000
    gen = torch.Generator(device="cuda").manual_seed(0)
    d_gpu = est.draw(q, S, generator=gen)
    assert d_gpu.device.type == "cuda" and torch.isfinite(d_gpu).all()
    again = est.draw(q, S, generator=torch.Generator(device="cuda").manual_seed(0))
    assert torch.equal(d_gpu, again)  # seeded CUDA draws are reproducible
    d_gpu = d_gpu.cpu()
    d_cpu = est.draw(p, S, generator=torch.Generator().manual_seed(1))
    se = ((d_cpu.var(0) + d_gpu.var(0)) / S).sqrt()
    z = torch.where(se > 0, (d_cpu.mean(0) - d_gpu.mean(0)) / se.clamp_min(1e-300), 0.0)
    if est.stochastic:
        assert float(z.abs().max()) < 5.0, spec  # two-sided ~4e-5 over ~70 coordinates
    else:
        assert torch.allclose(d_cpu, d_gpu, rtol=1e-10, atol=1e-14)
    if isinstance(est, PathEstimator):
        m_cpu, m_gpu = path_moments(est, p), path_moments(est, q)
        assert torch.allclose(m_gpu.mean.cpu(), m_cpu.mean, rtol=1e-10, atol=1e-13)
        assert torch.allclose(m_gpu.variance.cpu(), m_cpu.variance, rtol=1e-9, atol=1e-13)


@needs_cuda
def test_cuda_run_matches_cpu_run(tmp_path):
    case = parse_case(CASE, name="devcase")
    run_case(case, tmp_path / "cpu", progress=False)
    run_case(case, tmp_path / "gpu", progress=False, device="cuda")
    run_case(case, tmp_path / "gpu32", progress=False, device="cuda", dtype="float32")
    out = {}
    for tag in ("cpu", "gpu", "gpu32"):
        out[tag] = json.loads((tmp_path / tag / "devcase" / "results.json").read_text())
    assert out["cpu"]["run"]["device"] == "cpu"
    assert out["gpu"]["run"]["device"].startswith("cuda")
    assert out["gpu"]["run"]["device_name"] == torch.cuda.get_device_name()
    assert out["gpu32"]["run"]["dtype"] == "float32"
    e_cpu, e_gpu = out["cpu"]["points"][0]["exact"], out["gpu"]["points"][0]["exact"]
    assert e_gpu["loss"] == pytest.approx(e_cpu["loss"], rel=1e-12)
    for layer, norm in e_cpu["grad_norm"].items():
        assert e_gpu["grad_norm"][layer] == pytest.approx(norm, rel=1e-10)

    def rows(tag):
        with open(tmp_path / tag / "devcase" / "results.csv", newline="") as f:
            return list(csv.DictReader(f))

    cpu_rows = {(r["estimator"], r["layer"], r["metric"], r["M"]): r for r in rows("cpu")}
    for tag in ("gpu", "gpu32"):
        for r in rows(tag):
            c = cpu_rows[r["estimator"], r["layer"], r["metric"], r["M"]]
            assert not r["error"]
            if r["method"] == "exact" and r["metric"] != "unbiased_test":
                assert float(r["value"]) == pytest.approx(float(c["value"]), rel=1e-8, abs=1e-12)
            elif r["metric"] == "rel_rmse" and r["M"] == "1" and r["se"]:
                tol = 5 * math.hypot(float(r["se"]), float(c["se"]))
                assert abs(float(r["value"]) - float(c["value"])) < tol


def test_device_errors_name_the_setting():
    case = parse_case(CASE, name="devcase")
    with pytest.raises(EstbenchError, match="--device: expected one of 'cpu', 'cuda'"):
        run_settings(case, device="tpu")
    with pytest.raises(EstbenchError, match="--dtype: expected one of 'float64', 'float32'"):
        run_settings(case, dtype="bfloat16")


def test_chunks_hold_at_least_64_draws_within_the_budget():
    p = seed_problem()
    arm = default_registry().create("arm")
    per_draw = arm.bytes_per_draw(p)
    assert arm.chunk_size(p, 20_000) == max(64, (64 << 20) // per_draw)
    assert arm.chunk_size(p, 20_000, memory_budget=10 * per_draw) == 10  # the budget caps it
    assert arm.chunk_size(p, 5) == 5
