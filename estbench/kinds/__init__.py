"""The built-in problem kinds, one folder each (``estbench.problem`` states the contract):

* ``sbn``: SBN classifiers with real weights and stochastic binary activations;
* ``weights``: SBNs with Bernoulli weights (and stochastic or sign activations).

``layered`` holds what both share: the ``[model]`` keys of a layered network with a head, its
targets, and the memory floor of a point.
"""
