"""Estimators of the ``sbvae`` kind, one module per family: ``score`` (REINFORCE with and without
a baseline, RLOO), ``arm`` (ARM, DisARM), ``control_variates`` (MuProp, REBAR), ``straight_through``
(ST and its proxies, DARN) and ``relaxed`` (Concrete, ST-Gumbel-Softmax, Gumbel-Rao); ``base``
holds what they share and states the treatment of the encoder's pathwise -log q term."""

from .arm import VAEARM, VAEDisARM
from .base import VAEEstimator
from .control_variates import VAEREBAR, VAEMuProp
from .relaxed import VAEConcrete, VAEGumbelRao, VAEStraightThroughGumbelSoftmax
from .score import VAERLOO, VAEReinforce
from .straight_through import (
    VAEDarn,
    VAEStraightThrough,
    VAEStraightThroughHardtanh,
    VAEStraightThroughIdentity,
    VAEStraightThroughSlope,
    VAEStraightThroughTanh,
)

ESTIMATORS = (
    VAEReinforce,
    VAERLOO,
    VAEARM,
    VAEDisARM,
    VAEMuProp,
    VAEREBAR,
    VAEStraightThrough,
    VAEStraightThroughIdentity,
    VAEStraightThroughHardtanh,
    VAEStraightThroughTanh,
    VAEStraightThroughSlope,
    VAEDarn,
    VAEConcrete,
    VAEStraightThroughGumbelSoftmax,
    VAEGumbelRao,
)

__all__ = [
    "ESTIMATORS",
    "VAEARM",
    "VAERLOO",
    "VAEREBAR",
    "VAEConcrete",
    "VAEDarn",
    "VAEDisARM",
    "VAEEstimator",
    "VAEGumbelRao",
    "VAEMuProp",
    "VAEReinforce",
    "VAEStraightThrough",
    "VAEStraightThroughGumbelSoftmax",
    "VAEStraightThroughHardtanh",
    "VAEStraightThroughIdentity",
    "VAEStraightThroughSlope",
    "VAEStraightThroughTanh",
]
