"""The exact ELBO, its gradient and log p(x) of the ``sbvae`` kind (estbench.kinds.sbvae.exact)
against the enumeration of every joint latent state, central finite differences, the forward
recursion over pairwise marginals, and ELBO <= log p(x); with negative controls."""

from __future__ import annotations

import itertools

import pytest
import torch

from estbench.errors import MemoryBudgetError, ModelError
from estbench.kinds.sbn.model import state_bits
from estbench.kinds.sbvae import SBVAE, exact_elbo, exact_log_likelihood, plan_exact, random_sbvae

ARCHS = [  # (D, latent, hidden)
    (4, (3,), ()),
    (3, (2, 3), ()),
    (3, (3, 2, 2), ()),
    (4, (2, 2), (3,)),
    (3, (2,), (4, 2)),
]


def model_and_data(D, latent, hidden, seed=0, n=5, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    model = random_sbvae(D, latent, hidden, generator=g, scale=scale)
    # non-zero biases and prior, so that every term of the integrand is exercised
    params = {
        k: v + 0.7 * torch.randn(v.shape, generator=g, dtype=v.dtype) if v.dim() == 1 else v
        for k, v in model.params.items()
    }
    X = (torch.rand(n, D, generator=g) < 0.5).double()
    return model.replace(params), X


def brute_force(model: SBVAE, X: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Loss, gradient (autograd) and log p(x) by enumerating every joint z = (z_1, .., z_L)."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in model.params.items()}
    m = model.replace(leaves)
    states = [state_bits(n) for n in model.latent]
    elbo = X.new_zeros(X.shape[0])
    log_joint = []
    for combo in itertools.product(*(range(2**n) for n in model.latent)):
        z = [states[k][s].expand(X.shape[0], -1) for k, s in enumerate(combo)]
        lp, lq = m.log_joint(X, z), m.log_posterior(X, z)
        elbo = elbo + lq.exp() * (lp - lq)
        log_joint.append(lp.detach())
    loss = -elbo.mean()
    grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))
    return loss.detach(), grads, torch.logsumexp(torch.stack(log_joint), 0)


@pytest.mark.parametrize(("D", "latent", "hidden"), ARCHS)
def test_exact_matches_the_enumeration_of_all_joint_states(D, latent, hidden):
    model, X = model_and_data(D, latent, hidden)
    loss, grads, log_px = brute_force(model, X)
    ex = exact_elbo(model, X)
    assert abs(float(ex.loss - loss)) <= 1e-12 * max(1.0, abs(float(loss)))
    for key, g in grads.items():
        torch.testing.assert_close(ex.grads[key], g, rtol=1e-12, atol=1e-12, msg=key)
    torch.testing.assert_close(exact_log_likelihood(model, X), log_px, rtol=1e-12, atol=1e-12)


def test_the_enumeration_sees_a_wrong_gradient():
    """Negative control: the comparison above fails for a wrong objective -- the ELBO without
    the encoder's entropy term (E_q log p alone, whose gradient differs in the encoder)."""
    model, X = model_and_data(3, (2, 3), ())
    _, grads, _ = brute_force(model, X)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in model.params.items()}
    m = model.replace(leaves)
    states = [state_bits(n) for n in model.latent]
    total = X.new_zeros(X.shape[0])
    for combo in itertools.product(*(range(2**n) for n in model.latent)):
        z = [states[k][s].expand(X.shape[0], -1) for k, s in enumerate(combo)]
        total = total + m.log_posterior(X, z).exp() * m.log_joint(X, z)
    wrong = torch.autograd.grad(-total.mean(), [leaves["q_W1"]])[0]
    assert float((wrong - grads["q_W1"]).abs().max()) > 1e-2
    ex = exact_elbo(model, X)
    assert float((wrong - ex.grads["q_W1"]).abs().max()) > 1e-2


@pytest.mark.parametrize(("D", "latent", "hidden"), [ARCHS[1], ARCHS[3]])
def test_exact_gradient_matches_central_finite_differences(D, latent, hidden):
    model, X = model_and_data(D, latent, hidden, seed=3)
    ex = exact_elbo(model, X)
    flat = model.flat()
    g = model.flat(ex.grads)
    h = 1e-6
    for i in torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(1))[:25]:
        up, down = flat.clone(), flat.clone()
        up[i] += h
        down[i] -= h
        f_up = exact_elbo(model.replace(model.unflat(up)), X, with_grad=False).loss
        f_down = exact_elbo(model.replace(model.unflat(down)), X, with_grad=False).loss
        fd = float(f_up - f_down) / (2 * h)
        assert abs(fd - float(g[i])) <= 1e-7 * max(1.0, abs(fd)), int(i)


def test_the_elbo_is_below_the_log_likelihood_and_the_gap_closes_at_the_posterior():
    """ELBO_n <= log p(x_n) for every point; with a one-unit latent layer and an encoder that
    ignores x, the gap is KL(q || p(z | x)), 0 when q is the true posterior."""
    for D, latent, hidden in ARCHS:
        model, X = model_and_data(D, latent, hidden, seed=5)
        gap = exact_log_likelihood(model, X) + exact_elbo(model, X, with_grad=False).elbo * -1
        assert float(gap.min()) >= -1e-12 and float(gap.max()) > 1e-6
    # p(z) = Bern(0.5), p(x | z) = Bern(sigmoid(a z + c)); posterior p(z = 1 | x) for x = [1]
    a, c = 1.3, -0.4
    params = {
        "q_W1": torch.zeros(1, 1, dtype=torch.float64),
        "p_W1": torch.tensor([[a]], dtype=torch.float64),
        "p_b1": torch.tensor([c], dtype=torch.float64),
        "p_prior": torch.zeros(1, dtype=torch.float64),
    }
    sig = torch.sigmoid
    post = sig(torch.tensor(a + c)) / (sig(torch.tensor(a + c)) + sig(torch.tensor(c)))
    params["q_b1"] = torch.log(post / (1 - post)).reshape(1).double()
    model = SBVAE(1, (1,), (), params)
    X = torch.ones(1, 1, dtype=torch.float64)
    elbo = exact_elbo(model, X, with_grad=False).elbo
    torch.testing.assert_close(elbo, exact_log_likelihood(model, X), rtol=0, atol=1e-14)


def test_the_forward_recursion_over_pairwise_marginals_agrees():
    """The pairwise marginals q(z_{k-1}, z_k | x) = q(z_{k-1} | x) T_k of the forward
    recursion, summed per point, give the same ELBO as the value recursion from the top."""
    model, X = model_and_data(3, (3, 2, 2), (), seed=7)
    bits = [state_bits(n) for n in model.latent]
    lq1 = (X @ model.params["q_W1"].T + model.params["q_b1"]).unsqueeze(1)
    from estbench.kinds.sbvae.model import log_bernoulli

    q = log_bernoulli(bits[0], lq1).exp()  # [N, S_1]
    A1 = model.decoder_logits(1, bits[0])
    elbo = (q * (log_bernoulli(X[:, None, :], A1[None]) - q.log())).sum(1)
    for k in range(2, model.n_latent + 1):
        E = model.encoder_logits(k, bits[k - 2])  # [S_{k-1}, n_k]
        log_T = log_bernoulli(bits[k - 1][None], E[:, None, :])  # [S_{k-1}, S_k]
        A = model.decoder_logits(k, bits[k - 1])  # [S_k, n_{k-1}]
        log_p = log_bernoulli(bits[k - 2][:, None, :], A[None])  # [S_{k-1}, S_k]
        pair = q[:, :, None] * log_T.exp()[None]  # [N, S_{k-1}, S_k]
        elbo = elbo + (pair * (log_p - log_T)[None]).sum((1, 2))
        q = pair.sum(1)
    elbo = elbo + q @ log_bernoulli(bits[-1], model.prior_logits)
    torch.testing.assert_close(
        exact_elbo(model, X, with_grad=False).elbo, elbo, rtol=1e-12, atol=1e-12
    )


def test_blocks_under_a_small_budget_give_the_same_numbers():
    model, X = model_and_data(5, (4, 5), (3,), seed=2, n=40)
    full = exact_elbo(model, X)
    plan = plan_exact(model, 40, 30_000)
    assert plan.point_rows < 40 and plan.table_rows[0] < 16
    small = exact_elbo(model, X, memory_budget=30_000)
    torch.testing.assert_close(small.loss, full.loss, rtol=1e-13, atol=0)
    torch.testing.assert_close(
        model.flat(small.grads), model.flat(full.grads), rtol=1e-12, atol=1e-14
    )
    ll = exact_log_likelihood(model, X, memory_budget=30_000)
    torch.testing.assert_close(ll, exact_log_likelihood(model, X), rtol=1e-13, atol=0)


def test_over_the_budget_is_refused_before_any_work():
    model = random_sbvae(64, (40,), generator=torch.Generator().manual_seed(0))
    with pytest.raises(MemoryBudgetError, match=r"latent widths \[40\] with 10 data points needs"):
        plan_exact(model, 10, 1 << 30)


def test_data_must_be_binary_and_parameters_must_match():
    model, X = model_and_data(3, (2,), ())
    with pytest.raises(
        ModelError, match=r"X must be binary \(0 or 1\), found 0.5 at index \[1, 2\]"
    ):
        exact_elbo(model, torch.where(torch.arange(15).view(5, 3) == 5, 0.5, X))
    with pytest.raises(ModelError, match=r"expected \[N >= 1, 3\]"):
        exact_elbo(model, X[:, :2])
    params = dict(model.params)
    params["q_W1"] = params["q_W1"].T
    with pytest.raises(ModelError, match=r"parameter q_W1 has shape \[3, 2\], expected \[2, 3\]"):
        model.replace(params)
