"""The ``weights`` problem kind (``kind.WeightsKind``): SBNs whose weights are Bernoulli on
{-1, +1} with P(W = +1) = sigmoid(eta), their exact expected loss and gradients (wrt the latent
weights eta and the weight means mu = E W), and gradient estimators for them.

Modules: ``kind`` (the problem kind), ``model`` (the network and its data batch), ``exact`` (per-
point weight marginals by a lattice DP, then the layer-wise forward algorithm), ``paths`` (sampled
and enumerated forward passes, exact moments of path estimators), ``estimators`` (REINFORCE, ST,
BinaryConnect variants, ARM, DisARM), ``relaxed`` (the relaxation family: weight Concrete, ST
Gumbel-Softmax, Gumbel-Rao), ``multisample`` (ARMS, CARMS), ``logit_st`` (ReinMax, gapped
straight-through), ``loo_cv`` (DCV, RODEO), ``checkpoint`` (saving and loading
weight networks).
"""

from .checkpoint import WeightCheckpoint, load_weight_checkpoint, save_weight_checkpoint
from .estimators import (
    ESTIMATORS,
    BinaryConnect,
    WeightARM,
    WeightDisARM,
    WeightEstimator,
    WeightPathEstimator,
    WeightReinforce,
    WeightStraightThrough,
)
from .exact import WeightExactResult, exact_gradient, exact_loss, lattice_distribution
from .logit_st import WeightGappedST, WeightReinMax
from .loo_cv import WeightDoubleCV, WeightRODEO
from .model import WeightProblem, WeightSBN, random_weight_sbn
from .multisample import WeightARMS, WeightCARMS
from .paths import path_moments, sample_path
from .relaxed import WeightConcrete, WeightGumbelRao, WeightStraightThroughGumbelSoftmax

__all__ = [
    "ESTIMATORS",
    "BinaryConnect",
    "WeightARM",
    "WeightARMS",
    "WeightCARMS",
    "WeightCheckpoint",
    "WeightConcrete",
    "WeightDisARM",
    "WeightDoubleCV",
    "WeightEstimator",
    "WeightExactResult",
    "WeightGappedST",
    "WeightGumbelRao",
    "WeightPathEstimator",
    "WeightProblem",
    "WeightReinMax",
    "WeightRODEO",
    "WeightReinforce",
    "WeightSBN",
    "WeightStraightThrough",
    "WeightStraightThroughGumbelSoftmax",
    "exact_gradient",
    "exact_loss",
    "lattice_distribution",
    "load_weight_checkpoint",
    "path_moments",
    "random_weight_sbn",
    "sample_path",
    "save_weight_checkpoint",
]
