"""The ``sbn`` problem kind: SBN classifiers with real weights (``kind.SbnKind``)."""
