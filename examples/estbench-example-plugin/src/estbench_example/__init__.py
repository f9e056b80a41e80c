"""Example estbench plugin: see estimators.py."""
