"""The ``weights`` problem kind: SBNs with Bernoulli weights (``kind.WeightsKind``)."""
