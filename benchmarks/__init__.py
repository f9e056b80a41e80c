"""asv benchmark suite for estbench (public API only)."""
