"""asv benchmark suite for estbench (public API only): ``asv run --python=same`` (docs/).

Modules: ``exact`` (exact gradient over width and depth, seed network, width 13), ``estimators``
(20,000 draws of each estimator on the seed network), ``end_to_end`` (``estbench run`` on the
default case), ``accuracy`` (``track_`` benchmarks of accuracy figures, so an accuracy regression
shows in the asv history next to the timings).
"""
