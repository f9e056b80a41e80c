"""The sbn kind's estimators, one module per family: score-function path estimators (``score``),
score-function noise estimators (``score_noise``), learned control variates (``learned``), RLOO
with double or Stein control variates (``loo_cv``), relaxations (``relaxed``), straight-through
(``straight_through``), path-analytic (``path_analytic``); ``ops`` holds their shared vectorised
operations, and ``estbench.kinds.layered_estimators`` what they share with the weights kind (the
backward pass, the antithetic pairs). The contract they follow is ``estbench.estimators.base``."""
