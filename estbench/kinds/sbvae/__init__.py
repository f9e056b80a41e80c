"""The ``sbvae`` problem kind: variational autoencoders with Bernoulli latent layers (sigmoid
belief networks), the testbed of the discrete gradient-estimator literature, with the exact
negative ELBO, its gradient and the exact log-likelihood by enumeration of small latent layers.

Modules: ``model`` (the linear and nonlinear models and their data batch), ``exact`` (the exact
ELBO, its gradient and log p(x)).
"""

from .exact import ExactResult, exact_elbo, exact_log_likelihood, exact_loss, plan_exact
from .model import SBVAE, VAEProblem, random_sbvae

__all__ = [
    "SBVAE",
    "ExactResult",
    "VAEProblem",
    "exact_elbo",
    "exact_log_likelihood",
    "exact_loss",
    "plan_exact",
    "random_sbvae",
]
