"""The ``sbvae`` problem kind: variational autoencoders with Bernoulli latent layers (sigmoid
belief networks), the testbed of the discrete gradient-estimator literature, with the exact
negative ELBO, its gradient and the exact log-likelihood by enumeration of small latent layers.

Modules: ``kind`` (the problem kind), ``model`` (the linear and nonlinear models and their data
batch), ``exact`` (the exact ELBO, its gradient and log p(x)), ``data`` (the 8x8 digits and
synthetic patterns), ``checkpoint`` (issue 16's file format), ``estimators`` (REINFORCE, RLOO,
ARM, DisARM, MuProp, REBAR, the straight-through family, Concrete, ST-Gumbel-Softmax, Gumbel-Rao).
"""

from .data import digits, synthetic
from .exact import ExactResult, exact_elbo, exact_log_likelihood, exact_loss, plan_exact
from .model import SBVAE, VAEProblem, random_sbvae

__all__ = [
    "SBVAE",
    "ExactResult",
    "VAEProblem",
    "digits",
    "exact_elbo",
    "exact_log_likelihood",
    "exact_loss",
    "plan_exact",
    "random_sbvae",
    "synthetic",
]
