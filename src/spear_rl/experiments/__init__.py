"""Experiment tooling above the trainer: `spear compare` (presets x seeds, one table; its rows and
configs in plan.py, its run records in records.py, the locks that let processes share a folder in
locking.py), the frozen control, the learning / ablation / overhead tables of the benchmark scripts,
the first training batch the update benchmarks measure on, the WebShop failure funnel, and the
statistics they share (`tables.mean_std`, differences paired by seed).

Nothing in train/, rollout/, envs/ or algos/ imports from here; `benchmarks/*.py` and the CLI do.
"""
