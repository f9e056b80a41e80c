"""Training and checkpoints of stochastic-binary-weight models: the latent-weight updates (and
their mirror-descent reading), determinism, checkpoint files, case validation and the runner's
training snapshots."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

import estbench.runner as runner_module
import estbench.training as training_module
from estbench.cases import CaseError, TrainingSpec, load_case, parse_case, with_overrides
from estbench.checkpoint import checkpoint_kind
from estbench.data import make_dataset, targets_for_head
from estbench.errors import CheckpointError, EstbenchError
from estbench.estimators.registry import get_estimator
from estbench.kinds.sbn.checkpoint import load_checkpoint, save_checkpoint
from estbench.kinds.weights import (
    WeightProblem,
    WeightSBN,
    exact_gradient,
    exact_loss,
    load_weight_checkpoint,
    random_weight_sbn,
    save_weight_checkpoint,
)
from estbench.runner import run_case
from estbench.training import TrainingError, mirror_step, train

from .conftest import random_problem

F64 = torch.float64


def problem(seed: int = 1, *, n: int = 12, **kw) -> tuple[WeightSBN, torch.Tensor, torch.Tensor]:
    """A 2-3-2-1 weight network (real first layer, Bernoulli hidden pair) with two-class data."""
    X, labels = make_dataset("two-class", n, seed)
    model = random_weight_sbn(2, (3, 2), 1, generator=torch.Generator().manual_seed(seed), **kw)
    return model, X, targets_for_head(labels, "logistic", 1)


def params_of(net: WeightSBN) -> list[torch.Tensor]:
    return [*net.params, *net.biases]


def same(a: WeightSBN, b: WeightSBN) -> bool:
    return all(torch.equal(x, y) for x, y in zip(params_of(a), params_of(b), strict=True))


# ---- training -----------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["logistic", "sign"])
def test_exact_training_decreases_the_exact_loss(activation):
    kinds = ("bernoulli", "bernoulli", "real") if activation == "sign" else None
    model, X, Y = problem(activation=activation, kinds=kinds, coding="pm1")
    before = [p.clone() for p in params_of(model)]
    spec = TrainingSpec(method="exact", optimizer="adam", lr=0.1, epochs=40, measure_at=(0, 10, 40))
    snaps = train(model, X, Y, spec)
    assert sorted(snaps) == [0, 10, 40]
    assert same(snaps[0], model)  # epoch 0 is the initial network ...
    assert all(torch.equal(a, b) for a, b in zip(before, params_of(model), strict=True))  # intact
    losses = [float(exact_loss(snaps[e], X, Y)) for e in (0, 10, 40)]
    assert losses[0] > losses[1] > losses[2] and losses[2] < 0.85 * losses[0], losses
    for k in model.bernoulli_layers:  # the latent weights move far from where they started
        assert (snaps[40].params[k] - model.params[k]).abs().max() > 1.0
    assert all(isinstance(s, WeightSBN) and s.kinds == model.kinds for s in snaps.values())


def test_training_is_deterministic_given_the_seed():
    model, X, Y = problem()
    spec = TrainingSpec(method="weight-st", lr=0.05, batch_size=5, epochs=4, measure_at=(4,))
    a, b = train(model, X, Y, spec)[4], train(model, X, Y, spec)[4]
    other = train(model, X, Y, replace(spec, seed=1))[4]
    assert same(a, b)
    assert not same(a, other)


@pytest.mark.parametrize(
    "method",
    ["weight-st", "weight-st(wrt=mu)", "binaryconnect", "weight-arm", "weight-disarm",
     "weight-reinforce"],
)  # fmt: skip
def test_estimator_training_moves_eta_and_the_real_parameters(method):
    model, X, Y = problem(seed=2)
    spec = TrainingSpec(method=method, lr=0.1, batch_size=6, epochs=3, measure_at=(3,))
    net = train(model, X, Y, spec)[3]
    assert all(torch.isfinite(p).all() for p in params_of(net))
    assert not torch.equal(net.params[1], model.params[1])  # eta of the Bernoulli pair
    assert not torch.equal(net.params[2], model.params[2])  # the head
    assert net.kinds == model.kinds and net.activation == model.activation


def test_an_sbn_estimator_cannot_train_a_weight_model_and_vice_versa():
    model, X, Y = problem()
    with pytest.raises(
        TrainingError, match=r"training.method: estimator 'st' handles problem 'sbn'"
    ):
        train(model, X, Y, TrainingSpec(method="st", epochs=1, measure_at=(1,)))
    sbn, Xs, Ys = random_problem((2,), seed=0)
    with pytest.raises(TrainingError, match=r"'weight-st' handles problem 'weights'"):
        train(sbn, Xs, Ys, TrainingSpec(method="weight-st", epochs=1, measure_at=(1,)))


class ExactMuGradient:
    """A test-only 'estimator' wrt mu whose every draw is the exact dJ/dmu of the minibatch."""

    problem, wrt, spec = "weights", "mu", "exact-mu"

    def draw(self, pr: WeightProblem, n: int, *, generator: torch.Generator) -> torch.Tensor:
        return exact_gradient(pr.model, pr.X, pr.Y).flat("mu").expand(n, -1)


def golden_section(f, lo: torch.Tensor, hi: torch.Tensor, steps: int = 200) -> torch.Tensor:
    """Elementwise minimiser of a unimodal f on [lo, hi], from function values only."""
    r = (5**0.5 - 1) / 2
    for _ in range(steps):
        a, b = hi - r * (hi - lo), lo + r * (hi - lo)
        left = f(a) < f(b)
        hi, lo = torch.where(left, b, hi), torch.where(left, lo, a)
    return (lo + hi) / 2


def test_latent_sgd_with_the_mu_gradient_is_mirror_descent_on_mu(monkeypatch):
    """One latent-weight SGD step of size lr with g_mu equals the mirror-descent step of size
    eps = lr / 2 with the Bernoulli negative entropy: the closed form tanh(atanh(mu) - eps g_mu),
    and the minimiser of eps <g_mu, m> + D_phi(m, mu) found numerically from phi alone."""
    monkeypatch.setattr(training_module, "get_estimator", lambda spec: ExactMuGradient())
    model, X, Y = problem(seed=3, eta_scale=0.7)
    lr = 0.8
    spec = TrainingSpec(method="exact-mu", lr=lr, momentum=0.0, batch_size=len(X), epochs=1)
    net = train(model, X, Y, replace(spec, measure_at=(1,)))[1]
    k = 1
    g_mu = exact_gradient(model, X, Y).mean_grads[k][0]
    mu = model.means(k)
    # The latent-weight rule (to round-off: the step's minibatch is the data in shuffled order).
    torch.testing.assert_close(net.params[k], model.params[k] - lr * g_mu, rtol=0, atol=1e-15)
    closed = mirror_step(mu, g_mu, lr / 2)
    torch.testing.assert_close(net.means(k), closed, rtol=0, atol=1e-14)

    def phi(m):  # Bernoulli negative entropy of P(W = +1) = (1 + m) / 2
        p, q = (1 + m) / 2, (1 - m) / 2
        return p * torch.log(p) + q * torch.log(q)

    dphi = torch.func.grad(lambda m: phi(m).sum())(mu)
    prox = lambda m: (lr / 2) * g_mu * m + phi(m) - phi(mu) - dphi * (m - mu)  # noqa: E731
    numeric = golden_section(prox, torch.full_like(mu, -1 + 1e-15), torch.full_like(mu, 1 - 1e-15))
    torch.testing.assert_close(numeric, closed, rtol=0, atol=1e-8)
    # The head and biases take plain SGD steps with the same (real-parameter) gradient.
    g_head = exact_gradient(model, X, Y).grads[2][0]
    torch.testing.assert_close(net.params[2], model.params[2] - lr * g_head, rtol=0, atol=1e-15)


# ---- checkpoints --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kinds", "activation", "coding", "head", "out"),
    [
        (("real", "bernoulli", "real"), "logistic", "01", "logistic", 1),
        (("bernoulli", "bernoulli", "real"), "sign", "pm1", "softmax", 3),
        (("bernoulli", "real", "real"), "uniform", "pm1", "mse", 2),
    ],
)
def test_checkpoint_round_trip_is_bit_identical(tmp_path, kinds, activation, coding, head, out):
    g = torch.Generator().manual_seed(4)
    model = random_weight_sbn(
        2, (3, 2), out, generator=g, kinds=kinds, activation=activation, coding=coding, head=head
    )
    X = torch.randn(7, 2, generator=g, dtype=F64)
    Y = {
        "logistic": 2 * torch.randint(0, 2, (7,), generator=g).to(F64) - 1,  # labels ±1
        "softmax": torch.randint(0, out, (7,), generator=g).to(F64),
        "mse": torch.randn(7, out, generator=g, dtype=F64),
    }[head]
    path = tmp_path / "w.npz"
    save_weight_checkpoint(path, model, X, Y)
    assert not list(tmp_path.glob("*.tmp")) and checkpoint_kind(path) == "weights"
    ckpt = load_weight_checkpoint(path)
    again = ckpt.model()
    assert same(again, model) and all(p.dtype == F64 for p in params_of(again))
    assert again.kinds == kinds and ckpt.kinds == kinds
    assert (again.coding, again.activation, again.head.name) == (coding, activation, head)
    X2, Y2 = ckpt.data()
    assert torch.equal(X2, X) and torch.equal(Y2, Y)
    a, b = exact_gradient(again, X2, Y2), exact_gradient(model, X, Y)
    assert torch.equal(a.flat(), b.flat()) and float(a.loss) == float(b.loss)
    # Latent weights are stored as eta{k}, real weights as W{k}.
    names = set(np.load(path).files)
    assert {f"{'eta' if kd == 'bernoulli' else 'W'}{k}" for k, kd in enumerate(kinds)} <= names


def test_loading_the_wrong_kind_of_checkpoint_fails_naming_the_file(tmp_path):
    model, X, Y = problem()
    wpath, spath = tmp_path / "weights.npz", tmp_path / "sbn.npz"
    save_weight_checkpoint(wpath, model, X, Y)
    sbn, Xs, Ys = random_problem((2,), seed=0)
    save_checkpoint(spath, sbn, Xs, Ys)
    with pytest.raises(CheckpointError, match="a checkpoint of problem kind 'weights'") as info:
        load_checkpoint(wpath)
    assert str(info.value).startswith(f"{wpath}: ")
    with pytest.raises(CheckpointError, match="not a stochastic-binary-weight checkpoint") as info:
        load_weight_checkpoint(spath)
    assert str(info.value).startswith(f"{spath}: ")
    assert checkpoint_kind(spath) == "sbn"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"coding": np.array("ternary")}, r"key coding is 'ternary'; expected one of"),
        ({"activation": None}, r"missing key activation"),
        ({"estbench_model": np.array("other")}, r"key estbench_model is 'other'"),
        ({"W1": np.zeros((2, 3))}, r"pair 1 needs exactly one of eta1 .* and W1"),
        ({"W2": None, "eta2": np.zeros((1, 2))}, r"key eta2: the head .* must be real"),
        ({"eta1": np.zeros((2, 4))}, r"key eta1 has shape \[2, 4\], expected \[2, 3\]"),
        ({"eta1": np.full((2, 3), np.inf)}, r"key eta1 must hold finite numbers"),
        ({"w_1": np.zeros(1)}, r"unexpected key 'w_1'"),
    ],
)
def test_malformed_weight_checkpoints_name_file_and_key(tmp_path, changes, message):
    model, X, Y = problem()
    path = tmp_path / "w.npz"
    save_weight_checkpoint(path, model, X, Y)
    arrays = dict(np.load(path))
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(CheckpointError, match=message) as info:
        load_weight_checkpoint(path)
    assert str(info.value).startswith(f"{path}: ")


# ---- cases and the runner -----------------------------------------------------------------------

CASE = """
schema_version = 1
[data]
kind = "two-class"
n = 8
seed = 1
[model]
weights = "bernoulli"
widths = [2, 2]
coding = "pm1"
seed = 2
[training]
method = "exact"
optimizer = "adam"
lr = 0.2
batch_size = 4
epochs = 6
[sweep]
checkpoint = [0, 2, 6]
[measure]
estimators = ["weight-st", "weight-reinforce"]
draws = 200
M = [1, 10]
bootstrap = 10
"""


def test_training_is_accepted_for_weights_cases_and_checked_against_the_model(tmp_path):
    case = parse_case(CASE, name="t")
    assert case.training is not None and case.training.method == "exact"
    assert case.sweep["checkpoint"] == (0, 2, 6) and len(case.points()) == 3
    default = parse_case(CASE.replace('method = "exact"\n', ""), name="t")
    assert default.training is not None and default.training.method == "weight-reinforce"
    path = tmp_path / "bad.toml"
    path.write_text(CASE.replace('method = "exact"', 'method = "reinforce"'))
    with pytest.raises(CaseError) as info:
        load_case(path)
    message = str(info.value)
    assert message.startswith(f"{path}: training.method: estimator 'reinforce' handles an SBN")
    assert "expected an estimator with problem = 'weights'" in message
    # model.checkpoint is allowed for a weights model (no widths needed then).
    text = CASE.replace("widths = [2, 2]", 'checkpoint = "net.npz"').split("[training]")[0]
    ok = parse_case(text + "[measure]\nestimators = ['weight-st']\n", name="c", path=path)
    assert ok.model.checkpoint == tmp_path / "net.npz"


def test_shipped_training_case_validates_and_its_loss_decreases():
    case = load_case("weights-training")
    assert case.model.kind == "weights" and case.training is not None
    assert case.sweep["checkpoint"] == (0, 20, 200)
    assert all(get_estimator(e).problem == "weights" for e in case.measure.estimators)
    runner = runner_module.CaseRunner(case, None, progress=lambda m: None)  # type: ignore[arg-type]
    init, X, Y, _ = runner.initial({})
    snaps = train(init, X, Y, replace(case.training, measure_at=(0, 20, 200)))
    losses = [float(exact_loss(snaps[e], X, Y)) for e in (0, 20, 200)]
    assert losses[0] > losses[1] > losses[2] and losses[2] < 0.6 * losses[0], losses
    eta = snaps[200].params[1]
    assert eta.abs().min() > 5  # nearly deterministic weights: P(W = +1) within 0.7% of 0 or 1


def _exact_sections(directory):
    meta = json.loads((directory / "results.json").read_text())
    return {p["point"]["checkpoint"]: p["exact"] for p in meta["points"]}


def test_runner_trains_weight_models_to_checkpoints_and_reuses_them(tmp_path, monkeypatch):
    case = parse_case(CASE, name="t")
    report = run_case(case, tmp_path, progress=False)
    assert not report.errors and report.points_done == 3
    directory = tmp_path / "t"
    exact = _exact_sections(directory)
    assert sorted(exact) == [0, 2, 6]
    losses = []
    for epoch in (0, 2, 6):
        path = directory / "checkpoints" / f"w2-2_seed0_epoch{epoch}.npz"
        ckpt = load_weight_checkpoint(path)
        model = ckpt.model()
        ref = exact_gradient(model, *ckpt.data())
        ex = exact[epoch]
        assert ex["loss"] == float(ref.loss) and ex["kinds"] == ["real", "bernoulli", "real"]
        for name, v in zip(model.layer_names, ref.layer_vectors("eta"), strict=True):
            assert ex["grad_norm"][name] == pytest.approx(float(v.norm()), rel=1e-12)
        losses.append(ex["loss"])
    assert losses[0] > losses[2]
    init = load_weight_checkpoint(directory / "checkpoints" / "w2-2_seed0_epoch0.npz").model()
    fresh = random_weight_sbn(
        2, (2, 2), 1, generator=torch.Generator().manual_seed(2), coding="pm1"
    )
    assert same(init, fresh)  # epoch 0 is the case's initial network
    # A rerun (as after an interruption) reuses the stored snapshots: training must not run.
    csv = (directory / "results.csv").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(runner_module, "train", no_training)
    again = run_case(case, tmp_path, progress=False, force=True)
    assert again.points_done == 3 and not again.errors
    assert (directory / "results.csv").read_text() == csv
    assert _exact_sections(directory) == exact
    # Another version of the case is refused: the directory belongs to this one (run.json).
    edited = parse_case(CASE.replace('coding = "pm1"', 'coding = "01"'), name="t")
    with pytest.raises(EstbenchError, match=r"another run \(the case file changed\)"):
        run_case(edited, tmp_path, progress=False)
    # Without the record (only snapshots left), a snapshot of another network is refused too,
    # naming the file.
    shutil.rmtree(directory / "points")
    for name in ("run.json", "results.json", "results.csv"):
        (directory / name).unlink()
    with pytest.raises(CheckpointError, match="a stored training snapshot of another network"):
        run_case(edited, tmp_path, progress=False)


def test_weight_checkpoints_are_measured_from_the_case_or_the_command_line(tmp_path):
    model, X, Y = problem(coding="pm1")
    path = tmp_path / "net.npz"
    save_weight_checkpoint(path, model, X, Y)
    text = CASE.split("[training]")[0].replace("widths = [2, 2]", f'checkpoint = "{path}"')
    text += "[measure]\nestimators = ['weight-st']\ndraws = 100\nM = [1]\nbootstrap = 0\n"
    case = parse_case(text, name="c")
    run_case(case, tmp_path, progress=False)
    point = json.loads((tmp_path / "c" / "results.json").read_text())["points"][0]
    assert point["exact"]["loss"] == float(exact_loss(model, X, Y))
    # --checkpoint replaces the case's model and training, for a weights case too.
    over = with_overrides(parse_case(CASE, name="t"), checkpoint=path)
    assert over.training is None and over.name == "t@net"
    run_case(over, tmp_path, progress=False)
    point = json.loads((tmp_path / "t@net" / "results.json").read_text())["points"][0]
    assert point["exact"]["loss"] == float(exact_loss(model, X, Y))
    # The stored settings must be the case's: a weight checkpoint is measured as stored.
    wrong = parse_case(text.replace('coding = "pm1"', 'coding = "01"'), name="w")
    with pytest.raises(
        CheckpointError, match=r"key coding gives 'pm1', but <case w>: model.coding"
    ):
        run_case(wrong, tmp_path, progress=False)
    # An SBN checkpoint given to a weights case fails naming the file.
    sbn, Xs, Ys = random_problem((2,), seed=0)
    save_checkpoint(tmp_path / "sbn.npz", sbn, Xs, Ys)
    with pytest.raises(CheckpointError, match="not a stochastic-binary-weight checkpoint"):
        run_case(with_overrides(case, checkpoint=tmp_path / "sbn.npz"), tmp_path, progress=False)


def test_cli_runs_a_weights_case_on_a_weight_checkpoint(tmp_path, capsys):
    from estbench.cli import main

    model, X, Y = problem(coding="pm1")
    path = tmp_path / "net.npz"
    save_weight_checkpoint(path, model, X, Y)
    swept = CASE.replace("widths = [2, 2]", "depth = 2").replace(
        "[sweep]\n", "[sweep]\nwidth = [2, 3]\n"
    )
    case_path = tmp_path / "sw.toml"
    case_path.write_text(swept)
    # The stored network fixes the architecture: the width and training sweeps are dropped.
    assert with_overrides(load_case(case_path), checkpoint=path).points() == [{}]
    out = tmp_path / "out"
    args = ["run", str(case_path), "--checkpoint", str(path), "--out", str(out), "--no-report"]
    assert main([*args, "--quick", "--no-progress"]) == 0
    point = json.loads((out / "sw@net-quick" / "results.json").read_text())["points"][0]
    assert point["point"] == {} and point["exact"]["loss"] == float(exact_loss(model, X, Y))
    # An SBN case refuses it before any work, naming the file.
    sbn = tmp_path / "sbn.toml"
    sbn.write_text("schema_version = 1\n[model]\nwidths = [3, 2]\n[measure]\nestimators = ['st']\n")
    assert main(["run", str(sbn), "--checkpoint", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: a checkpoint of problem kind 'weights'" in err
    assert not (out / "sbn@net").exists()
