"""Estimators of the ``sbvae`` kind, one module per family: ``score`` (REINFORCE with and without
a baseline, RLOO), ``loo_cv`` (DCV, RODEO), ``arm`` (ARM, DisARM), ``multi_sample`` (ARMS,
CARMS), ``local`` (Tokui-Sato, LEG), ``control_variates`` (MuProp, REBAR), ``learned`` (RELAX),
``straight_through`` (ST and its proxies, DARN, ReinMax, GST, ZGR) and ``relaxed`` (Concrete,
ST-Gumbel-Softmax, Gumbel-Rao); ``base`` holds what they share and states the treatment of the
encoder's pathwise -log q term."""

from .arm import VAEARM, VAEDisARM
from .base import VAEEstimator
from .control_variates import VAEREBAR, VAEMuProp
from .learned import VAERELAX
from .local import VAELocalExpectation, VAETokuiSato
from .loo_cv import VAERODEO, VAEDoubleCV
from .multi_sample import VAEARMS, VAECARMS
from .relaxed import VAEConcrete, VAEGumbelRao, VAEStraightThroughGumbelSoftmax
from .score import VAERLOO, VAEReinforce
from .straight_through import (
    VAEZGR,
    VAEDarn,
    VAEGappedST,
    VAEReinMax,
    VAEStraightThrough,
    VAEStraightThroughHardtanh,
    VAEStraightThroughIdentity,
    VAEStraightThroughSlope,
    VAEStraightThroughTanh,
)

ESTIMATORS = (
    VAEReinforce,
    VAERLOO,
    VAEDoubleCV,
    VAERODEO,
    VAEARM,
    VAEDisARM,
    VAEARMS,
    VAECARMS,
    VAETokuiSato,
    VAELocalExpectation,
    VAEMuProp,
    VAEREBAR,
    VAERELAX,
    VAEStraightThrough,
    VAEStraightThroughIdentity,
    VAEStraightThroughHardtanh,
    VAEStraightThroughTanh,
    VAEStraightThroughSlope,
    VAEDarn,
    VAEReinMax,
    VAEGappedST,
    VAEZGR,
    VAEConcrete,
    VAEStraightThroughGumbelSoftmax,
    VAEGumbelRao,
)

__all__ = [
    "ESTIMATORS",
    "VAEARM",
    "VAEARMS",
    "VAECARMS",
    "VAERELAX",
    "VAERLOO",
    "VAERODEO",
    "VAEREBAR",
    "VAEZGR",
    "VAEConcrete",
    "VAEDarn",
    "VAEDoubleCV",
    "VAEDisARM",
    "VAEEstimator",
    "VAEGappedST",
    "VAEGumbelRao",
    "VAELocalExpectation",
    "VAEMuProp",
    "VAEReinMax",
    "VAEReinforce",
    "VAEStraightThrough",
    "VAEStraightThroughGumbelSoftmax",
    "VAEStraightThroughHardtanh",
    "VAEStraightThroughIdentity",
    "VAEStraightThroughSlope",
    "VAEStraightThroughTanh",
    "VAETokuiSato",
]
