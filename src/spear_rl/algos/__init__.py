"""The SPEAR algorithm core: pure functions and small stateful objects on tensors.

- `advantages`: estimators by name (grpo, dr_grpo, rloo, gigpo) and group reward statistics
- `losses`: policy losses by name (vanilla, clip_cov, kl_cov, gpg), entropy bonus, reference KL
- `aggregation`: loss aggregation modes, exact across micro-batches and ranks
- `filters`: Dr.BoT response filters and the group-std filter
- `rewards`: intrinsic tool-call reward and invalid-format penalty
- `schedules`: cosine rise/decay curricula
- `replay`: the self-imitation buffer with baseline history and advantage recalibration

Nothing here imports a model, an environment or does I/O.
"""
