"""The sbn kind's estimators, one module per family: score-function path estimators (``score``),
score-function noise estimators (``score_noise``), relaxations (``relaxed``), straight-through
(``straight_through``), path-analytic (``path_analytic``); ``ops`` holds their shared vectorised
operations. The contract they follow is ``estbench.estimators.base``."""
