"""The code sandbox's limits and isolation levels (one home, imported by `isolation` and `sandbox`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Strongest first. Only SAFE_LEVELS keep the sandbox's promise (see docs/sandbox.md); the others run
# model code only when the user opts in with `allow_unsafe=true`.
LEVELS = ("bwrap", "unshare", "rlimits")
SAFE_LEVELS = ("bwrap",)
UNSAFE_LEVELS = tuple(level for level in LEVELS if level not in SAFE_LEVELS)
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap)"
# What the weaker levels leave open (said in every error and warning about them).
UNSAFE_GAPS = (
    "model code can read host files its uid may read, connect to host Unix sockets, import "
    "whatever the host's Python has, and leave files in /tmp, /var/tmp and /dev/shm (unbounded) "
    "for later calls"
)


class SandboxUnavailableError(RuntimeError):
    """The requested isolation level cannot run on this machine (the message says why and what to do)."""


class SandboxConfigError(SandboxUnavailableError, ValueError):
    """A sandbox setting that cannot work (a ValueError; the CLI prints it as one line)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one run. Defaults suit one tool call of a math agent."""

    cpu_seconds: float = 5.0
    wall_seconds: float = 10.0
    # address space per process, and all processes together where a memory cgroup can be made
    memory_mb: int = 512
    max_processes: int = 16  # processes + threads of the sandbox uid (python itself needs 1)
    file_size_mb: int = 10  # largest file the program may write
    disk_mb: int = 64  # size of each private tmpfs (/tmp, the working dir, and /dev/shm)
    max_open_files: int = 64
    max_output_chars: int = 2000  # what the model sees, truncated in the middle
    max_output_bytes: int = 8 * 1024 * 1024  # the program is stopped when it writes more
    max_code_chars: int = 100_000
    isolation: str = "auto"  # auto (= bwrap) | bwrap | unshare | rlimits
    # opt in to the unshare / rlimits levels, which do not keep the promise (UNSAFE_GAPS)
    allow_unsafe: bool = False

    def __post_init__(self) -> None:
        positive = [
            f.name for f in dataclasses.fields(self) if f.name not in ("isolation", "allow_unsafe")
        ]
        for name in positive:
            if not getattr(self, name) > 0:
                raise SandboxConfigError(
                    f"SandboxLimits.{name} must be > 0, got {getattr(self, name)!r}"
                )
        if self.isolation not in ("auto", *LEVELS):
            raise SandboxConfigError(
                f"SandboxLimits.isolation must be one of auto, {', '.join(LEVELS)}; "
                f"got {self.isolation!r}"
            )
        if not isinstance(self.allow_unsafe, bool):
            raise SandboxConfigError(
                f"SandboxLimits.allow_unsafe must be true or false, got {self.allow_unsafe!r}"
            )
        if self.isolation in UNSAFE_LEVELS and not self.allow_unsafe:
            raise SandboxConfigError(
                f"sandbox isolation {self.isolation!r} is unsafe: {UNSAFE_GAPS}. For a safe "
                f"sandbox, {INSTALL_HINT} and use isolation=auto; to accept this level, set "
                "env.kwargs.sandbox.allow_unsafe=true"
            )

    @classmethod
    def from_dict(cls, values: dict) -> SandboxLimits:
        """Build from config; an unknown key is an error naming the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SandboxConfigError(
                f"unknown sandbox limit(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)
