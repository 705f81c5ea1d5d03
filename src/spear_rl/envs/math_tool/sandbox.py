"""The code tool: run model-written Python in a sandbox and turn what happened into a tool message.

`run_code(code, limits)` never raises: every failure (syntax error, timeout, memory bomb, a sandbox
that cannot start) is a `ToolResult` with `ok=False`, a short `reason` and a message for the model.
The program runs as `python -I -u main.py` in a fresh working dir, with rlimits, a memory + pids
cgroup for its whole process tree where one can be made, a wall-clock limit that kills its whole
process group, a clean environment, stdin at /dev/null, and its output read with a cap (a 100 MB
print never reaches memory). Isolation is probed once per process and logged: bubblewrap, the only
level that keeps the promise in docs/sandbox.md, or, only when the user opts in with
`allow_unsafe=true`, unshare / rlimits with a warning; see `isolation.py`. Where no safe level can
run and there is no opt-in, the sandbox refuses with what to install.

Many calls run in parallel with `run_code_batch` or `submit_code` (threads waiting on subprocesses).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from spear_rl.envs.math_tool import cgroups, isolation
from spear_rl.envs.math_tool.isolation import (
    BWRAP_WORKDIR,
    RUNTIME_PACKAGES,
    SCRIPT_NAME,
    SandboxUnavailableError,
)
from spear_rl.envs.math_tool.limits import (
    INSTALL_HINT,
    SAFE_LEVELS,
    UNSAFE_GAPS,
    UNSAFE_LEVELS,
    SandboxLimits,
)

__all__ = [
    "SandboxLimits",
    "SandboxUnavailableError",
    "ToolResult",
    "check_sandbox",
    "describe_isolation",
    "isolation_level",
    "run_code",
    "run_code_batch",
    "submit_code",
]

logger = logging.getLogger(__name__)

_READ_CHUNK = 65536
# After the program exits, how long to keep draining pipes held open by a leftover child.
_EXIT_GRACE_S = 0.2
_STDERR_TAIL_LINES = 20


@dataclass(frozen=True)
class ToolResult:
    output: str  # what the model sees
    ok: bool  # the program ran and exited 0
    # ok | error | timeout | cpu_limit | memory_limit | process_limit | file_size_limit |
    # output_limit | killed | invalid_code | sandbox_error
    reason: str
    seconds: float
    isolation: str = ""  # the level that ran it ("" when nothing ran)


# ---- isolation: probed once per requested level -------------------------------------------------
@dataclass(frozen=True)
class _Resolved:
    level: str
    python: str
    runtime: str = ""  # "3.11.7 at /usr", as the sandboxed interpreter reports it
    packages: str = ""  # the RUNTIME_PACKAGES it can import, comma-separated
    cgroup: str | None = None  # "v1" | "v2" when each run gets its own memory + pids cgroup


_resolved: dict[tuple[str, bool], _Resolved] = {}
_resolve_errors: dict[tuple[str, bool], str] = {}
_resolve_lock = threading.Lock()


def isolation_level(limits: SandboxLimits | None = None) -> str:
    """The isolation in use for these limits ("bwrap", "unshare" or "rlimits"); probes on first use."""
    return _resolve(limits or SandboxLimits()).level


def describe_isolation(limits: SandboxLimits | None = None) -> dict[str, str | bool]:
    """What model code gets with these limits: level, safety, interpreter, packages, memory bound."""
    found = _resolve(limits or SandboxLimits())
    return {
        "level": found.level,
        "safe": found.level in SAFE_LEVELS,
        "python": found.python,
        "runtime": found.runtime,
        "packages": found.packages,
        "memory_bound": f"cgroup {found.cgroup}" if found.cgroup else "per process",
    }


def check_sandbox(limits: SandboxLimits | None = None) -> str:
    """Probe now (raises SandboxUnavailableError with what to do); returns the level."""
    return isolation_level(limits)


def _resolve(limits: SandboxLimits) -> _Resolved:
    requested = (limits.isolation, limits.allow_unsafe)
    with _resolve_lock:
        if requested in _resolved:
            return _resolved[requested]
        if requested in _resolve_errors:
            raise SandboxUnavailableError(_resolve_errors[requested])
        if limits.isolation == "auto":
            # the weaker levels only for a user who opted in; never a silent step down
            candidates = SAFE_LEVELS + (UNSAFE_LEVELS if limits.allow_unsafe else ())
        else:
            candidates = (limits.isolation,)
        failures = []
        for level in candidates:
            found, why = _probe_level(level)
            if found is not None:
                cgroup, cgroup_why = cgroups.support()
                found = dataclasses.replace(found, cgroup=cgroup)
                _resolved[requested] = found
                _log_choice(found, failures, cgroup_why)
                return found
            failures.append(f"{level}: {why}")
        message = "no code sandbox can run here: " + "; ".join(failures)
        if not limits.allow_unsafe and any(level in SAFE_LEVELS for level in candidates):
            message += (
                f". To run model code safely, {INSTALL_HINT}; or accept a weaker level "
                f"(where {UNSAFE_GAPS}) with env.kwargs.sandbox.allow_unsafe=true"
            )
        _resolve_errors[requested] = message
        raise SandboxUnavailableError(message)


def _probe_level(level: str) -> tuple[_Resolved | None, str]:
    """Run a tiny program through the level and pick the interpreter to use there."""
    if level == "bwrap":
        pythons = [sys.executable]  # its prefix is bound into the sandbox
    else:
        # as an unprivileged uid the trainer's interpreter may sit in an unreadable home (pyenv)
        pythons = list(
            dict.fromkeys([sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"])
        )
        pythons = [p for p in pythons if os.path.exists(p)]
    probe_limits = SandboxLimits(
        wall_seconds=30.0, isolation=level, allow_unsafe=level in UNSAFE_LEVELS
    )
    probe = (
        "import importlib.util, sys\nprint(6 * 7)\n"
        f"print(','.join(n for n in {RUNTIME_PACKAGES!r} if importlib.util.find_spec(n)) or '-')\n"
        "print(sys.version.split()[0], 'at', sys.prefix)"
    )
    why = "no usable Python interpreter"
    working: list[_Resolved] = []
    for python in pythons:
        try:
            result = _execute(_Resolved(level, python), probe, probe_limits)
        except Exception as err:  # e.g. a tool this level needs is missing
            why = f"{type(err).__name__}: {err}"
            continue
        lines = result.output.strip().splitlines()
        if not (result.ok and lines[:1] == ["42"] and len(lines) == 3):
            why = f"probe with {python} failed ({result.reason}): {result.output.strip()[:300]}"
            continue
        found = _Resolved(level, python, lines[-1], lines[1].strip("-"))
        if level == "bwrap" and not lines[-1].endswith(f" at {sys.prefix}"):
            # the bound prefix was not readable inside: never run on another install's runtime
            why = f"{python} inside bwrap found {lines[-1]}, not its own prefix {sys.prefix}"
            continue
        # The trainer's own interpreter is only itself when it finds its own prefix; an unreadable
        # prefix makes it fall back to another install's runtime: prefer a self-contained one then.
        if python != sys.executable or lines[-1].endswith(f" at {sys.base_prefix}"):
            return found, ""
        working.append(found)
    return (working[0], "") if working else (None, why)


def _log_choice(found: _Resolved, failures: list[str], cgroup_why: str) -> None:
    """Log the level once per process: info when it keeps the promise, a warning saying why not."""
    uid_note = (
        f"each run as its own uid from {isolation.UID_POOL_BASE}"
        if isolation.running_as_root()
        else "as the trainer's own uid (not root), so NPROC is a shared bound"
    )
    what = {
        "bwrap": "bubblewrap: no network, own namespaces and /proc, only a read-only runtime "
        "visible, fresh private /tmp and /dev/shm",
        "unshare": "UNSAFE, opted in: no network, own pid namespace; " + UNSAFE_GAPS,
        "rlimits": "UNSAFE, opted in: network and host processes reachable; " + UNSAFE_GAPS,
    }[found.level]
    memory = (
        f"memory and processes bounded for the whole run by a cgroup {found.cgroup}"
        if found.cgroup
        else f"no cgroup can be made here ({cgroup_why}), so memory is bounded per process only "
        "(memory_mb each, max_processes of them)"
    )
    packages = found.packages or "no third-party packages"
    line = (
        f"code sandbox isolation: {found.level} ({what}; {memory}; {uid_note}; "
        f"python {found.python}, {found.runtime}, with {packages})"
    )
    problems = []
    if failures:
        problems.append("stronger levels unavailable: " + "; ".join(failures))
    if found.level not in SAFE_LEVELS:
        problems.append(f"for a safe sandbox, {INSTALL_HINT}")
    if problems or not found.cgroup:
        logger.warning(". ".join([line, *problems]))
    else:
        logger.info(line)


# ---- public API ---------------------------------------------------------------------------------
def check_code_input(code, max_code_chars: int) -> ToolResult | None:
    """The refusal for code no interpreter should look at (none, or too long), else None. Shared
    by the sandbox and the calculator, so the model reads the same message from either."""
    if not isinstance(code, str) or not code.strip():
        return ToolResult(
            "Error: the tool call contains no code to run.", False, "invalid_code", 0.0
        )
    if len(code) > max_code_chars:
        message = f"Error: the code is too long ({len(code)} characters; at most {max_code_chars})."
        return ToolResult(message, False, "invalid_code", 0.0)
    return None


def run_code(code: str, limits: SandboxLimits | None = None) -> ToolResult:
    """Run `code` in the sandbox and describe the outcome for the model. Never raises."""
    limits = limits or SandboxLimits()
    start = time.monotonic()
    refused = check_code_input(code, limits.max_code_chars)
    if refused is not None:
        return refused
    try:
        resolved = _resolve(limits)
        return dataclasses.replace(_execute(resolved, code, limits), isolation=resolved.level)
    except Exception as err:  # the trainer must survive anything the sandbox does
        logger.error("code sandbox failed: %s", err)
        message = (
            f"Error: the code sandbox failed to run the program ({type(err).__name__}: {err})."
        )
        return ToolResult(message, False, "sandbox_error", time.monotonic() - start)


def run_code_batch(
    codes: list[str], limits: SandboxLimits | None = None, max_workers: int | None = None
) -> list[ToolResult]:
    """Run many programs in parallel (threads over subprocesses); results in input order."""
    if not codes:
        return []
    workers = min(len(codes), max_workers or default_max_workers())
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda code: run_code(code, limits), codes))


def default_max_workers() -> int:
    return max(2, os.cpu_count() or 2)


_shared_pool: concurrent.futures.ThreadPoolExecutor | None = None
_shared_pool_lock = threading.Lock()


def submit_code(
    code: str, limits: SandboxLimits | None = None
) -> concurrent.futures.Future[ToolResult]:
    """Start a run on a shared pool and return at once (for rollouts that overlap tool calls)."""
    global _shared_pool
    with _shared_pool_lock:
        if _shared_pool is None:
            _shared_pool = concurrent.futures.ThreadPoolExecutor(
                default_max_workers(), thread_name_prefix="sandbox"
            )
    return _shared_pool.submit(run_code, code, limits)


# ---- one run ------------------------------------------------------------------------------------
class _CappedBuffer:
    """Keeps the first and last `keep` bytes of a stream and counts the rest."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.keep - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.keep:
                del self.tail[: len(self.tail) - self.keep]

    def text(self) -> str:
        dropped = self.total - len(self.head) - len(self.tail)
        middle = f"\n... [{dropped} bytes truncated] ...\n" if dropped > 0 else ""
        return _decode(bytes(self.head)) + middle + _decode(bytes(self.tail))


@dataclass
class _Outcome:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    output_overflow: bool
    oom_killed: bool = False  # the cgroup's memory limit killed a process of the run


def _execute(resolved: _Resolved, code: str, limits: SandboxLimits) -> ToolResult:
    start = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="spear_sandbox_", ignore_cleanup_errors=True) as workdir,
        isolation.lease_uid() as uid,
        _run_cgroup(resolved, limits) as group,
    ):
        script = os.path.join(workdir, SCRIPT_NAME)
        with open(script, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(code)
        os.chmod(script, 0o644)
        in_bwrap = resolved.level == "bwrap"
        if uid is not None and not in_bwrap:
            os.chown(workdir, uid, uid)  # the program's own writable dir
        os.chmod(workdir, 0o700 if not in_bwrap else 0o755)
        argv = isolation.sandbox_command(resolved.level, resolved.python, script, uid, limits)
        home = BWRAP_WORKDIR if in_bwrap else workdir
        prefix = isolation.prlimit_prefix(limits)
        preexec = None if prefix is not None else isolation.preexec_rlimits(limits)
        enter = group.enter_prefix() if group is not None else []
        try:
            proc = subprocess.Popen(
                enter + (prefix or []) + argv,
                cwd=workdir,
                env=isolation.child_environment(home),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, killed as a whole
                close_fds=True,
                preexec_fn=preexec,  # only when prlimit is missing
            )
        except OSError as err:
            message = f"Error: the code sandbox could not start ({err})."
            return ToolResult(message, False, "sandbox_error", time.monotonic() - start)
        try:
            outcome = _collect(proc, limits, start)
        finally:
            if proc.returncode is None:  # _collect failed midway
                _kill_group(proc)
                proc.wait()
            # (leftovers under the leased uid are killed when the lease ends)
        seconds = time.monotonic() - start
        outcome.oom_killed = group is not None and group.oom_killed()
        script_paths = (f"{BWRAP_WORKDIR}/{SCRIPT_NAME}", script)
        return _describe(outcome, limits, resolved.level, seconds, script_paths)


@contextlib.contextmanager
def _run_cgroup(resolved: _Resolved, limits: SandboxLimits):
    """This run's own memory + pids cgroup, or None where none can be made (said at resolve)."""
    if resolved.cgroup is None:
        yield None
        return
    with cgroups.make(resolved.cgroup, limits.memory_mb, limits.max_processes) as group:
        yield group


def _collect(proc: subprocess.Popen, limits: SandboxLimits, start: float) -> _Outcome:
    """Read both pipes with caps until the program ends, times out, or writes too much."""
    keep = max(4 * limits.max_output_chars, 16384)
    buffers = {proc.stdout: _CappedBuffer(keep), proc.stderr: _CappedBuffer(keep)}
    selector = selectors.DefaultSelector()
    for stream in buffers:
        os.set_blocking(stream.fileno(), False)
        selector.register(stream, selectors.EVENT_READ)
    deadline = start + limits.wall_seconds
    timed_out = overflow = False
    exited_at: float | None = None
    try:
        while selector.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if _has_exited(proc):
                exited_at = exited_at or now
                if now - exited_at > _EXIT_GRACE_S:
                    break  # a leftover child holds the pipes open
            for key, _ in selector.select(timeout=min(deadline - now, 0.05)):
                try:
                    data = os.read(key.fd, _READ_CHUNK)
                except BlockingIOError:
                    continue
                if data:
                    buffers[key.fileobj].add(data)
                else:
                    selector.unregister(key.fileobj)
            if sum(b.total for b in buffers.values()) > limits.max_output_bytes:
                overflow = True
                break
    finally:
        selector.close()
    if not _has_exited(proc) and not (timed_out or overflow):
        # pipes closed early (the program closed its stdout): wait for the exit within the limit
        while not _has_exited(proc) and time.monotonic() < deadline:
            time.sleep(0.01)
        timed_out = not _has_exited(proc)
    # The leader is not reaped yet, so its group id cannot have been reused: kill what is left.
    _kill_group(proc)
    returncode = proc.wait()
    for stream in buffers:
        stream.close()
    return _Outcome(
        returncode,
        buffers[proc.stdout].text(),
        buffers[proc.stderr].text(),
        timed_out,
        overflow,
    )


def _has_exited(proc: subprocess.Popen) -> bool:
    """Whether the program ended, without reaping it (its pid stays reserved for killpg)."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


# ---- turning an outcome into a tool message ----------------------------------------------------
def _decode(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    # control characters other than newline/tab are noise to a tokenizer
    return "".join(ch for ch in text if ch in "\n\t" or ch >= " " and ch != "\x7f")


def truncate_middle(text: str, max_chars: int) -> str:
    """`text` cut to at most `max_chars`, keeping its start and end around a marker."""
    if len(text) <= max_chars:
        return text
    if max_chars < 40:  # no room for a marker
        return text[:max_chars]
    marker_template = "\n... [{} chars truncated] ...\n"
    marker_len = len(marker_template.format(len(text)))
    keep = max(0, max_chars - marker_len)
    head, tail = keep - keep // 2, keep // 2
    cut = len(text) - head - tail
    tail_text = text[len(text) - tail :] if tail else ""
    return text[:head] + marker_template.format(cut) + tail_text


def _signal_of(returncode: int | None, level: str) -> int | None:
    """The signal that ended the program (bwrap reports a signalled child as 128 + signal)."""
    if returncode is None:
        return None
    if returncode < 0:
        return -returncode
    if level == "bwrap" and 128 < returncode < 128 + 65:
        return returncode - 128
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _stderr_tail(stderr: str) -> str:
    lines = stderr.rstrip().splitlines()
    return "\n".join(lines[-_STDERR_TAIL_LINES:])


def _classify_stderr(stderr_tail: str) -> str | None:
    last = stderr_tail.strip().splitlines()[-1] if stderr_tail.strip() else ""
    if "MemoryError" in last or "Cannot allocate memory" in stderr_tail:
        return "memory_limit"
    if "Resource temporarily unavailable" in last or "can't start new thread" in last:
        return "process_limit"
    if "File too large" in last or "No space left on device" in last:
        return "file_size_limit"
    return None


def _describe(
    outcome: _Outcome, limits: SandboxLimits, level: str, seconds: float, script_paths: tuple
) -> ToolResult:
    def clean(text: str) -> str:
        for path in script_paths:
            text = text.replace(path, SCRIPT_NAME)
        return text

    stdout, stderr_tail = clean(outcome.stdout), clean(_stderr_tail(outcome.stderr))
    signal_number = _signal_of(outcome.returncode, level)
    wall, cpu = f"{limits.wall_seconds:g}s", f"{limits.cpu_seconds:g}s"

    if outcome.output_overflow:
        reason = "output_limit"
        headline = (
            f"Error: output limit exceeded (more than {limits.max_output_bytes // 1024} KiB "
            "written); the program was stopped. Print less."
        )
        body = stdout
    elif outcome.timed_out:
        reason, headline, body = "timeout", f"Error: execution timed out after {wall}", stdout
    elif outcome.returncode == 0:
        text = stdout if stdout.strip() else "(no output: print() the values you need)"
        return ToolResult(truncate_middle(text, limits.max_output_chars), True, "ok", seconds)
    elif outcome.oom_killed:
        reason = "memory_limit"
        headline = (
            f"Error: memory limit exceeded ({limits.memory_mb} MB for all processes together)"
        )
        body = stdout
    elif signal_number == signal.SIGXCPU:
        reason, headline, body = "cpu_limit", f"Error: CPU time limit exceeded ({cpu})", stdout
    elif signal_number == signal.SIGKILL:
        # not our kill (that is a timeout): the CPU hard limit, or the program killed itself
        reason = "killed"
        headline = f"Error: the program was killed by SIGKILL (the CPU time limit is {cpu})"
        body = stdout
    elif signal_number == signal.SIGXFSZ:
        reason = "file_size_limit"
        headline = f"Error: file size limit exceeded ({limits.file_size_mb} MB)"
        body = stdout
    else:
        kind = _classify_stderr(stderr_tail)
        body = "\n".join(part for part in (stdout.rstrip(), stderr_tail) if part)
        if kind == "memory_limit":
            reason, headline = kind, f"Error: memory limit exceeded ({limits.memory_mb} MB)"
        elif kind == "process_limit":
            reason = kind
            headline = f"Error: process/thread limit exceeded ({limits.max_processes})"
        elif kind == "file_size_limit":
            reason = kind
            headline = (
                f"Error: file size or disk limit exceeded ({limits.file_size_mb} MB per file, "
                f"{limits.disk_mb} MB in all)"
            )
        elif signal_number is not None:
            reason = "killed"
            headline = f"Error: the program was killed by {_signal_name(signal_number)}"
            if signal_number == signal.SIGSEGV:
                headline += " (a crash, often too deep recursion)"
        else:
            reason = "error"
            headline = (
                "" if stderr_tail else f"Error: the program exited with code {outcome.returncode}"
            )
    output = "\n".join(part for part in (headline, body.strip("\n")) if part)
    return ToolResult(truncate_middle(output, limits.max_output_chars), False, reason, seconds)
