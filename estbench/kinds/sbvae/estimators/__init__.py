"""Estimators of the ``sbvae`` kind, one module per family: ``score`` (REINFORCE with and without
a baseline, RLOO) and ``arm`` (ARM, DisARM); ``base`` holds what they share and states the
treatment of the encoder's pathwise -log q term."""

from .arm import VAEARM, VAEDisARM
from .base import VAEEstimator
from .score import VAERLOO, VAEReinforce

ESTIMATORS = (VAEReinforce, VAERLOO, VAEARM, VAEDisARM)

__all__ = ["ESTIMATORS", "VAEARM", "VAERLOO", "VAEDisARM", "VAEEstimator", "VAEReinforce"]
