"""Exact reference for stochastic binary weights: against brute-force joint enumeration over all
weights and all hidden states (differentiated by autograd), finite differences, the core solver
and the lattice DP's own brute force."""

from __future__ import annotations

import itertools

import pytest
import torch

from estbench.errors import MemoryBudgetError, ModelError
from estbench.kinds.sbn.exact import exact_gradient as core_exact_gradient
from estbench.kinds.sbn.model import flatten_layers, state_bits
from estbench.kinds.weights import exact as weights_exact
from estbench.kinds.weights.exact import (
    exact_gradient,
    exact_loss,
    lattice_distribution,
    state_lattices,
)
from estbench.kinds.weights.model import WeightSBN, random_weight_sbn
from estbench.kinds.weights.paths import weight_configurations

from .oracle import _loss

F64 = torch.float64


def make_problem(
    widths,
    kinds,
    *,
    seed,
    coding="01",
    activation="logistic",
    head="logistic",
    input_dim=2,
    n_points=4,
    eta_scale=1.5,
    bias_scale=0.5,
    x_scale=1.0,
    weight_noise="logistic",
):
    g = torch.Generator().manual_seed(seed)
    out_dim = {"logistic": 1, "softmax": 3, "mse": 2}[head]
    model = random_weight_sbn(
        input_dim,
        widths,
        out_dim,
        generator=g,
        kinds=kinds,
        eta_scale=eta_scale,
        scale=1.3,
        bias_scale=bias_scale,
        coding=coding,
        activation=activation,
        head=head,
        weight_noise=weight_noise,
    )
    X = x_scale * torch.randn(n_points, input_dim, generator=g, dtype=F64)
    if head == "logistic":
        Y = torch.where(torch.rand(n_points, generator=g) < 0.5, 1.0, -1.0).double()
    elif head == "softmax":
        Y = torch.randint(0, 3, (n_points,), generator=g).double()
    else:
        Y = torch.randn(n_points, out_dim, generator=g, dtype=F64)
    return model, X, Y


# P(W = +1) as a function of eta and mu = E W in terms of eta, per weight noise, written out
# here: sigmoid (logistic), the hard sigmoid clamp((eta + 1)/2, 0, 1) (uniform on [-1, 1]) and
# the probit Phi (gaussian).
WEIGHT_LAWS = {
    "logistic": (torch.sigmoid, lambda eta: torch.tanh(eta / 2)),
    "uniform": (lambda eta: torch.clamp((eta + 1) / 2, 0, 1), lambda eta: eta.clamp(-1, 1)),
    "gaussian": (torch.special.ndtr, lambda eta: torch.erf(eta / 2**0.5)),
}


def joint_oracle(model: WeightSBN, X, Y, *, wrt="eta", strict_sign=False):
    """(loss, [(dtheta_k, db_k)]) by summing P(W) P(x | W) l over every joint configuration of
    the Bernoulli weights and the hidden states; gradients by autograd. Independent of the
    package: P(W = +1) from ``WEIGHT_LAWS`` (or (1 + mu)/2), P(off) = 1 - P(on), plain
    matmuls."""
    prob_plus, mean = WEIGHT_LAWS[model.weight_noise.name]
    thetas, biases, weights, prob_w = [], [], [], None
    n_bern = sum(model.params[k].numel() for k in model.bernoulli_layers)
    configs = torch.tensor(list(itertools.product((0.0, 1.0), repeat=n_bern)), dtype=F64)
    configs = configs.reshape(2**n_bern, n_bern)
    start = 0
    for k, kind in enumerate(model.kinds):
        theta = model.params[k].detach().clone()
        if kind == "bernoulli" and wrt == "mu":
            theta = mean(theta)
        theta.requires_grad_()
        thetas.append(theta)
        biases.append(model.biases[k].detach().clone().requires_grad_())
        if kind == "real":
            weights.append(theta)
            continue
        size = theta.numel()
        bits = configs[:, start : start + size].reshape(-1, *theta.shape)
        start += size
        p = prob_plus(theta) if wrt == "eta" else (1 + theta) / 2
        layer_prob = torch.where(bits == 1, p, 1 - p).flatten(1).prod(1)
        prob_w = layer_prob if prob_w is None else prob_w * layer_prob
        weights.append((2 * bits - 1)[:, None])  # [C_w, 1, out, in]
    if prob_w is None:
        prob_w = torch.ones(1, dtype=F64)
    total = sum(model.widths)
    states = torch.tensor(list(itertools.product((0.0, 1.0), repeat=total)), dtype=F64)
    states = states.reshape(2**total, total)
    x = X  # [N, d]
    prob = prob_w[:, None, None]
    start = 0
    for k, n in enumerate(model.widths):
        W = weights[k]
        a = x @ W.transpose(-1, -2) + biases[k]
        if model.noise is None:
            p_on = (a > 0 if strict_sign else a >= 0).to(F64)
        else:
            p_on = model.noise.cdf(a)
        on = states[None, :, None, start : start + n]
        prob = prob * torch.where(on == 1, p_on, 1 - p_on).prod(-1)
        x = (on if model.coding == "01" else 2 * on - 1).expand(-1, -1, X.shape[0], -1)
        start += n
    z = x @ weights[-1].T + biases[-1]
    y = Y[:, 0] if (Y.dim() == 2 and model.head.name != "mse") else Y
    loss = (prob * _loss(model.head.name, z, y)).sum((0, 1)).mean()
    leaves = [t for pair in zip(thetas, biases, strict=True) for t in pair]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)
    return loss.detach(), [(grads[2 * k], grads[2 * k + 1]) for k in range(len(thetas))]


def close(a, b, rel=1e-12, abs_=1e-15):
    return float((a - b).norm()) <= rel * float(b.norm()) + abs_


ACTIVATIONS = ("logistic", "gaussian", "uniform", "sign")
SHAPES = [
    ((2,), ("bernoulli", "real")),
    ((2, 2), ("real", "bernoulli", "real")),
    ((2, 2), ("bernoulli", "bernoulli", "real")),
    ((2, 2, 1), ("real", "bernoulli", "bernoulli", "real")),
    ((3, 2), ("bernoulli", "real", "real")),
]
CASES = [
    (i, *SHAPES[i % len(SHAPES)], act, coding, head)
    for i, (act, coding, head) in enumerate(
        itertools.product(ACTIVATIONS, ("01", "pm1"), ("logistic", "softmax", "mse"))
    )
    if (i % 3) != 2 or act == "sign"  # 18 of the 24 combinations, every sign one
]


def test_case_grid_covers_the_required_space():
    assert {c[3] for c in CASES} == set(ACTIVATIONS)
    assert {c[4] for c in CASES} == {"01", "pm1"} and {c[5] for c in CASES} == {
        "logistic",
        "softmax",
        "mse",
    }
    assert {len(c[1]) for c in CASES} == {1, 2, 3}
    assert {c[2][0] for c in CASES} == {"real", "bernoulli"}
    assert len(CASES) >= 16


@pytest.mark.parametrize(
    ("seed", "widths", "kinds", "activation", "coding", "head"),
    CASES,
    ids=[f"{c[3]}-{c[4]}-{c[5]}-{''.join(k[0] for k in c[2])}" for c in CASES],
)
def test_matches_joint_enumeration(seed, widths, kinds, activation, coding, head):
    model, X, Y = make_problem(
        widths, kinds, seed=seed, coding=coding, activation=activation, head=head
    )
    got = exact_gradient(model, X, Y)
    for wrt in ("eta", "mu"):
        loss, pairs = joint_oracle(model, X, Y, wrt=wrt)
        assert abs(float(got.loss - loss)) <= 1e-13 * float(loss)
        for k, (g, o) in enumerate(zip(got.layer_vectors(wrt), flatten_layers(pairs), strict=True)):
            if model.kinds[k] == "bernoulli" or k == model.depth:
                assert o.norm() > 1e-6, f"layer{k} has a vanishing gradient; pick another seed"
            assert close(g, o), (wrt, k, g, o)


def test_sign_tie_rule_is_on_at_zero():
    """Zero biases and ±1 states make integer pre-activations with ties at 0. The exact solver
    follows sign(0) = +1; the strict rule (on iff a > 0) gives another objective, so the oracle
    comparison would catch a wrong tie rule."""
    model, X, Y = make_problem(
        (2, 2), ("bernoulli", "bernoulli", "real"), seed=3, coding="pm1", activation="sign"
    )
    model = model.replace(
        biases=(torch.zeros(2, dtype=F64), torch.zeros(2, dtype=F64), model.biases[2])
    )
    X = torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.5, 0.5], [-2.0, 2.0]], dtype=F64)
    got = exact_gradient(model, X, Y)
    loss, pairs = joint_oracle(model, X, Y)
    strict, _ = joint_oracle(model, X, Y, strict_sign=True)
    assert abs(float(got.loss - loss)) < 1e-14
    assert abs(float(strict - loss)) > 1e-3
    for g, o in zip(got.layer_vectors(), flatten_layers(pairs), strict=True):
        assert close(g, o)


def test_wrong_coding_disagrees_with_the_oracle():
    """Negative control: the same parameters read in the other coding give another gradient."""
    model, X, Y = make_problem((2, 2), ("real", "bernoulli", "real"), seed=5)
    got = exact_gradient(model.replace(coding="pm1"), X, Y)
    _, pairs = joint_oracle(model, X, Y)
    assert not close(got.layer_vectors()[1], flatten_layers(pairs)[1], rel=1e-2)


@pytest.mark.parametrize("activation", ["logistic", "sign"])
def test_matches_central_finite_differences(activation):
    model, X, Y = make_problem(
        (2, 3), ("bernoulli", "bernoulli", "real"), seed=11, coding="pm1", activation=activation
    )
    grads = exact_gradient(model, X, Y).grads
    h = 1e-5
    checked = 0
    for k in range(len(model.params)):
        for index, tensor in enumerate((model.params[k], model.biases[k])):
            flat = tensor.view(-1)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + h
                up = exact_loss(model, X, Y)
                flat[i] = old - h
                down = exact_loss(model, X, Y)
                flat[i] = old
                fd = float((up - down) / (2 * h))
                assert abs(fd - float(grads[k][index].view(-1)[i])) < 1e-9, (k, index, i)
                checked += 1
    assert checked == sum(model.layer_sizes)


def test_mean_and_latent_gradients_follow_the_chain_rule():
    model, X, Y = make_problem((2, 2), ("bernoulli", "bernoulli", "real"), seed=7, coding="pm1")
    r = exact_gradient(model, X, Y)
    for k in model.bernoulli_layers:
        mu = model.means(k)
        assert torch.allclose(r.grads[k][0], r.mean_grads[k][0] * (1 - mu**2) / 2, rtol=1e-13)
        assert torch.allclose(model.mean_jacobian(k), (1 - mu**2) / 2, rtol=1e-14)
    assert torch.equal(r.grads[2][0], r.mean_grads[2][0])


def test_all_real_weights_reduce_to_the_core_solver():
    model, X, Y = make_problem(
        (3, 2), ("real", "real", "real"), seed=2, coding="pm1", activation="gaussian", head="mse"
    )
    ours = exact_gradient(model, X, Y)
    core = core_exact_gradient(model.with_weights([None] * 3), X, Y)
    assert abs(float(ours.loss - core.loss)) < 1e-14
    assert close(ours.flat(), core.flat(), rel=1e-13)


@pytest.mark.parametrize("coding", ["01", "pm1"])
def test_equals_the_weight_average_of_core_exact_objectives(coding):
    """J = sum_W P(W) J_core(W) and dJ/db = sum_W P(W) dJ_core(W)/db, with the core solver
    (its own state DP) run on every weight draw; dJ/deta = sum_W P(W) (b - p) J_core(W)."""
    model, X, Y = make_problem(
        (2, 2), ("bernoulli", "bernoulli", "real"), seed=4, coding=coding, head="softmax"
    )
    wbits, p_w = weight_configurations(model)
    loss, d_b1, d_eta1 = 0.0, 0.0, 0.0
    for c in range(p_w.shape[0]):
        W = [None if w is None else 2 * w[c] - 1 for w in wbits]
        core = core_exact_gradient(model.with_weights(W), X, Y)
        loss = loss + p_w[c] * core.loss
        d_b1 = d_b1 + p_w[c] * core.grads[1][1]
        d_eta1 = d_eta1 + p_w[c] * (wbits[1][c] - model.probs(1)[0]) * core.loss
    ours = exact_gradient(model, X, Y)
    assert abs(float(ours.loss - loss)) < 1e-14
    assert close(ours.grads[1][1], d_b1, rel=1e-12)
    assert close(ours.grads[1][0], d_eta1, rel=1e-11)


def test_lattice_distribution_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(3, 5, 3, generator=g, dtype=F64)
    raw = raw / raw.sum(-1, keepdim=True)
    plus, minus, zero = raw.unbind(-1)  # [3, 5] each
    dist = lattice_distribution(plus, minus, zero)
    assert dist.shape == (3, 11)
    expected = torch.zeros(3, 11, dtype=F64)
    for combo in itertools.product((1, -1, 0), repeat=5):
        prob = torch.ones(3, dtype=F64)
        for i, c in enumerate(combo):
            prob = prob * {1: plus, -1: minus, 0: zero}[c][:, i]
        expected[:, sum(combo) + 5] += prob
    assert torch.allclose(dist, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("coding", ["01", "pm1"])
def test_prefix_tree_lattices_equal_one_dp_per_state(coding):
    """state_lattices shares the DP over common prefixes of the enumerated states; every state's
    row must equal the plain per-state DP (``lattice_distribution``)."""
    g = torch.Generator().manual_seed(3)
    eta = 2 * torch.randn(3, 5, generator=g, dtype=F64)
    p, q = torch.sigmoid(eta), torch.sigmoid(-eta)
    bits = state_bits(5, dtype=F64)
    b = bits[:, None, :]  # x_i = 1 adds W_ji; x_i = 0 adds 0 ({0,1}) or -W_ji (±1)
    if coding == "01":
        terms = (b * p, b * q, (1 - b).expand(-1, 3, -1))
    else:
        terms = (b * p + (1 - b) * q, b * q + (1 - b) * p, torch.zeros(32, 3, 5, dtype=F64))
    expected = lattice_distribution(*terms)  # [32, 3, 11], one DP per state
    assert torch.allclose(state_lattices(p, q, coding), expected, rtol=0, atol=1e-15)


def test_blocked_transitions_give_the_same_gradient(monkeypatch):
    """Row blocks of one row (many blocks per table, rebuilt in the backward pass) give the same
    loss and gradients as whole tables, and both match finite differences."""
    model, X, Y = make_problem(
        (3, 4, 3), ("real", "bernoulli", "bernoulli", "real"), seed=5, coding="pm1"
    )
    whole = exact_gradient(model, X, Y)
    monkeypatch.setattr(weights_exact, "TABLE_BLOCK_BYTES", 1)
    assert weights_exact.block_rows(4, 8) == 1
    blocked = exact_gradient(model, X, Y)
    assert torch.equal(whole.loss, blocked.loss)
    assert torch.allclose(whole.flat("eta"), blocked.flat("eta"), rtol=1e-13, atol=1e-15)
    eta = model.params[2]
    h, (j, i) = 1e-6, (1, 2)
    loss = []
    for s in (h, -h):
        shifted = eta.clone()
        shifted[j, i] += s
        params = (*model.params[:2], shifted, model.params[3])
        loss.append(exact_loss(model.replace(params=params), X, Y))
    fd = (loss[0] - loss[1]) / (2 * h)
    assert abs(float(fd - blocked.grads[2][0][j, i])) < 1e-8 * max(1.0, abs(float(fd)))


def test_memory_guard_refuses_before_allocating():
    model, X, Y = make_problem((10, 12), ("real", "bernoulli", "real"), seed=1, n_points=100)
    with pytest.raises(MemoryBudgetError, match=r"widths \[10, 12\] and 100 data points"):
        exact_gradient(model, X, Y, memory_budget=1 << 20)


def test_model_errors_are_clear():
    model, X, Y = make_problem((2,), ("real", "real"), seed=1)
    with pytest.raises(ModelError, match="head"):
        model.replace(kinds=("real", "bernoulli"))
    with pytest.raises(ModelError, match="Bernoulli first layer"):
        random_weight_sbn(17, [2], generator=torch.Generator(), kinds=["bernoulli", "real"])
    with pytest.raises(ModelError, match="kinds"):
        model.replace(kinds=("real",))
    with pytest.raises(ModelError, match="unknown activation"):
        WeightSBN.from_arrays(
            [torch.ones(2, 2), torch.ones(1, 2)],
            [torch.ones(2), torch.ones(1)],
            ["real", "real"],
            activation="relu",
        )
    with pytest.raises(ModelError, match="real weights"):
        model.probs(0)
