"""The code sandbox against hostile programs: each is contained within its limits, comes back as a
clear tool message, and leaves the test process alive with no stray processes behind.

The whole battery runs, in parallel, at every level that promises containment (SAFE_LEVELS; a level
this machine cannot set up is skipped with the reason the sandbox gives). The weaker levels must
refuse without the `allow_unsafe` opt-in; with it, a smaller battery repeats the process-escape cases.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

import spear_rl
from spear_rl.envs.math_tool import cgroups, isolation, sandbox
from spear_rl.envs.math_tool.limits import SAFE_LEVELS, UNSAFE_LEVELS
from spear_rl.envs.math_tool.sandbox import (
    SandboxLimits,
    SandboxUnavailableError,
    ToolResult,
    check_sandbox,
    describe_isolation,
    isolation_level,
    run_code,
    run_code_batch,
    truncate_middle,
)

# Small limits keep the battery fast; a private uid range keeps other sandbox users out of our checks.
TEST_LIMITS = SandboxLimits(
    cpu_seconds=1,
    wall_seconds=3,
    memory_mb=256,
    max_processes=8,
    file_size_mb=2,
    disk_mb=16,
    max_output_chars=600,
    max_output_bytes=1024 * 1024,
)
TEST_UID_BASE = 62000 + (os.getpid() % 40) * 50
SECRET = "hunter2-" + uuid.uuid4().hex
ESCAPE_NAME = f"spear_sandbox_escape_{uuid.uuid4().hex}"
SIGINT_AT_IMPORT = signal.getsignal(signal.SIGINT)  # before any hostile program has run
# What the host holds that model code must never see (made by the `host_secrets` fixture).
HOST_SOCKET = f"/tmp/spear_sandbox_sock_{uuid.uuid4().hex[:12]}"
ABSTRACT_SOCKET = f"\0spear_sandbox_{uuid.uuid4().hex[:12]}"
PROJECT_SOURCE = os.path.realpath(spear_rl.__file__)
CHECKPOINT_SECRET = "checkpoint-" + uuid.uuid4().hex
CHILD_MB = 100  # the forked-memory case: six children of this size against memory_mb=256


def level_limits(level: str) -> SandboxLimits:
    return dataclasses.replace(TEST_LIMITS, isolation=level, allow_unsafe=level in UNSAFE_LEVELS)


def host_passwd_line() -> str:
    with open("/etc/passwd", encoding="utf-8", errors="replace") as f:
        return f.readline().strip()


@pytest.fixture(scope="module", autouse=True)
def private_uid_pool():
    old = isolation.UID_POOL_BASE, isolation.UID_POOL_SIZE
    isolation.UID_POOL_BASE, isolation.UID_POOL_SIZE = TEST_UID_BASE, 48
    os.environ["SPEAR_TEST_SECRET"] = SECRET  # the sandbox must not pass it on
    yield
    isolation.UID_POOL_BASE, isolation.UID_POOL_SIZE = old
    os.environ.pop("SPEAR_TEST_SECRET", None)


@pytest.fixture(scope="module")
def listener():
    """A 127.0.0.1 server the sandbox tries to reach (loopback only, never another address)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.setblocking(False)
    yield server
    server.close()


@pytest.fixture(scope="module")
def host_secrets(tmp_path_factory):
    """World-writable Unix sockets (a file in /tmp and an abstract name) and a run's checkpoint.

    The checkpoint goes where runs go, under the project's (git-ignored) runs/ folder, not under
    /tmp, whose private tmpfs would hide it for an unrelated reason.
    """
    servers = []
    for address in (HOST_SOCKET, ABSTRACT_SOCKET):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(address)
        if not address.startswith("\0"):
            os.chmod(address, 0o777)
        server.listen(4)
        server.setblocking(False)
        servers.append(server)
    runs = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "runs")
    run_dir = os.path.join(runs, f"sandbox_test_{uuid.uuid4().hex[:12]}", "checkpoints", "step_1")
    os.makedirs(run_dir)
    checkpoint = os.path.join(run_dir, "state.pt")
    with open(checkpoint, "w") as f:
        f.write(CHECKPOINT_SECRET)
    os.chmod(checkpoint, 0o644)
    yield {"servers": servers, "checkpoint": checkpoint}
    for server in servers:
        server.close()
    os.remove(HOST_SOCKET)
    shutil.rmtree(os.path.dirname(os.path.dirname(run_dir)))


@dataclass
class Case:
    name: str
    code: str
    check: Callable[[ToolResult, str], None]  # (result, isolation level)


def failed(*reasons: str, contains: str = "") -> Callable[[ToolResult, str], None]:
    def check(result: ToolResult, level: str) -> None:
        assert not result.ok, result
        assert result.reason in reasons, result
        assert contains in result.output, result

    return check


def succeeded(contains: str = "", excludes: str | None = None):
    def check(result: ToolResult, level: str) -> None:
        assert result.ok, result
        assert contains in result.output, result
        if excludes is not None:
            assert excludes not in result.output, result

    return check


def prints(expected: str):
    def check(result: ToolResult, level: str) -> None:
        assert result.ok and result.output.strip() == expected, result

    return check


def contained(result: ToolResult, level: str) -> None:
    """Any outcome is fine as long as it is a message (the test process surviving is checked after)."""
    assert result.output.strip(), result


def denied_or_absent(result: ToolResult, level: str) -> None:
    assert result.ok and "READ" not in result.output, result
    assert result.output.strip().startswith(("PermissionError", "FileNotFoundError")), result


def fast(check: Callable[[ToolResult, str], None], seconds: float = 2.9):
    def timed(result: ToolResult, level: str) -> None:
        check(result, level)
        assert result.seconds < seconds, result

    return timed


SPIN = "while True:\n    pass\n"
TRY_OPEN = "try:\n    open({path!r}).read(1)\n    print('READ')\nexcept OSError as e:\n    print(type(e).__name__)\n"
TRY_WRITE = "try:\n    open({path!r}, 'w').write('x')\n    print('WROTE')\nexcept OSError as e:\n    print(type(e).__name__, e.errno)\n"


def write_denied(result: ToolResult, level: str) -> None:
    assert result.ok and "WROTE" not in result.output, result
    # EACCES (permissions) or EROFS (bwrap's read-only system)
    assert result.output.split()[-1] in ("13", "30"), result


def battery(listen_port: int, checkpoint: str = "/nonexistent/state.pt") -> list[Case]:
    loopback_connect = textwrap.dedent(f"""
        import socket
        s = socket.socket()
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", {listen_port}))
            print("CONNECTED")
        except OSError as e:
            print("blocked", type(e).__name__)
    """)

    def network_blocked(result: ToolResult, level: str) -> None:
        assert result.ok, result
        if level in ("bwrap", "unshare"):  # own network namespace: the host's loopback is gone
            assert result.output.startswith("blocked"), result

    def escape_file_absent(result: ToolResult, level: str) -> None:
        assert result.ok, result
        host_file = f"/tmp/{ESCAPE_NAME}"
        if level == "bwrap":  # a private tmpfs; the weaker levels share the host's /tmp
            assert not os.path.exists(host_file), "the sandbox wrote the host's /tmp"
        elif os.path.exists(host_file):
            os.remove(host_file)

    def disk_capped(result: ToolResult, level: str) -> None:
        if level in SAFE_LEVELS:  # the working dir is a tmpfs of disk_mb
            failed("file_size_limit", contains="No space left on device")(result, level)
        else:  # no total cap at the weaker levels (documented); the dir is removed after the run
            assert result.ok, result

    def unix_socket(address: str) -> str:
        return textwrap.dedent(f"""
            import socket
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect({address!r})
                s.sendall(b"leak")
                print("CONNECTED")
            except OSError as e:
                print("blocked", type(e).__name__)
        """)

    def blocked(result: ToolResult, level: str) -> None:
        assert result.ok and result.output.startswith("blocked"), result

    def host_file_hidden(secret: str):
        def check(result: ToolResult, level: str) -> None:
            denied_or_absent(result, level)
            assert secret not in result.output, result

        return check

    read_and_print = "try:\n    print(open({path!r}).read()[:200])\nexcept OSError as e:\n    print(type(e).__name__)\n"

    write_everywhere = textwrap.dedent("""
        import os
        wrote = []
        for d in ["/", "/var/tmp", "/dev", "/usr", "/etc", "/root", "/proc", os.path.dirname(os.__file__)]:
            try:
                with open(os.path.join(d, "spear_probe"), "w") as f:
                    f.write("x")
                wrote.append(d)
            except OSError:
                pass
        print("wrote", wrote)
    """)

    def runs_unprivileged(result: ToolResult, level: str) -> None:
        assert result.ok, result
        if isolation.running_as_root():
            assert "uid=0" not in result.output and "uid=" in result.output, result

    return [
        Case("infinite loop", SPIN, failed("cpu_limit", "timeout")),
        Case(
            "cpu spin with arithmetic",
            "x = 0\nwhile True:\n    x = (x * 31 + 7) % 1000003\n",
            failed("cpu_limit", "timeout", contains="Error"),
        ),
        Case("memory bomb: list", "x = [0] * 10**9\n", failed("memory_limit", contains="memory")),
        Case("memory bomb: bytearray", "b = bytearray(2 * 1024**3)\n", failed("memory_limit")),
        Case(
            "memory bomb: gradual growth",
            "chunks = []\nwhile True:\n    chunks.append(' ' * 10**6)\n",
            failed("memory_limit", "cpu_limit", "timeout"),
        ),
        Case(
            "memory bomb: 2**(10**10)",
            "print(2 ** (10**10))\n",
            failed("memory_limit", "cpu_limit", "timeout"),
        ),
        Case(
            "fork bomb",
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
            failed("cpu_limit", "timeout", "killed"),
        ),
        Case(
            "fork bomb, uncaught",
            "import os\nwhile True:\n    os.fork()\n",
            failed("process_limit", "cpu_limit", "timeout", "killed", "error"),
        ),
        Case(
            "thread bomb",
            "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n",
            failed("process_limit", "memory_limit"),
        ),
        Case(
            "subprocess spawning a shell",
            "import subprocess\nprint(subprocess.run(['/bin/sh', '-c', 'id'], capture_output=True, text=True).stdout)\n",
            runs_unprivileged,
        ),
        Case(
            "os.system",
            "import os\nprint('status', os.system('touch /usr/pwned 2>/dev/null'))\n",
            succeeded(contains="status", excludes="status 0\n"),
        ),
        Case(
            "deep recursion",
            "def f(n):\n    return f(n + 1)\nf(0)\n",
            failed("error", contains="RecursionError"),
        ),
        Case(
            "deep recursion with raised limit",
            "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1) + 1\nf(0)\n",
            failed("killed", "memory_limit", "error", "cpu_limit", "timeout"),
        ),
        Case(
            "huge output (100 MB)",
            "for _ in range(10**6):\n    print('x' * 99)\n",
            failed("output_limit", contains="chars truncated"),
        ),
        Case(
            "endless output on one line",
            "import sys\nwhile True:\n    sys.stdout.write('y' * 4096)\n",
            failed("output_limit"),
        ),
        Case("read /etc/shadow", TRY_OPEN.format(path="/etc/shadow"), denied_or_absent),
        Case("read /root", TRY_OPEN.format(path="/root/.bashrc"), denied_or_absent),
        Case("read /proc/1/environ", TRY_OPEN.format(path="/proc/1/environ"), denied_or_absent),
        Case(
            "read /etc/passwd",
            read_and_print.format(path="/etc/passwd"),
            host_file_hidden(host_passwd_line()),
        ),
        Case(
            "read the project's sources",
            read_and_print.format(path=PROJECT_SOURCE),
            host_file_hidden('"""'),
        ),
        Case(
            "read a run's checkpoint",
            read_and_print.format(path=checkpoint),
            host_file_hidden(CHECKPOINT_SECRET),
        ),
        Case(
            "read the trainer's command line",
            read_and_print.format(path=f"/proc/{os.getpid()}/cmdline"),
            host_file_hidden("pytest"),
        ),
        Case(
            "count host processes",
            "import os\nprint(sum(p.isdigit() for p in os.listdir('/proc')))\n",
            few_processes,
        ),
        Case("unix socket to a host server in /tmp", unix_socket(HOST_SOCKET), blocked),
        Case("abstract unix socket on the host", unix_socket(ABSTRACT_SOCKET), blocked),
        Case(
            "write outside /tmp and /dev/shm",
            write_everywhere,
            prints("wrote []"),
        ),
        Case(
            "fill /dev/shm",  # 30 files of 1 MB (each under file_size_mb) into a 16 MB tmpfs
            "for i in range(30):\n    with open('/dev/shm/f%d' % i, 'wb') as f:\n"
            "        f.write(b'x' * 2**20)\nprint('wrote 30 MB')\n",
            failed("file_size_limit", contains="No space left on device"),
        ),
        Case(
            "the runtime: numpy and sympy, nothing else installed",
            textwrap.dedent("""
                import importlib.util
                for name in ("numpy", "sympy", "torch", "spear_rl", "transformers", "pytest"):
                    print(name, importlib.util.find_spec(name) is not None)
            """),
            runtime_defined,
        ),
        Case("write into /usr", TRY_WRITE.format(path="/usr/pwned"), write_denied),
        Case("write into /etc", TRY_WRITE.format(path="/etc/pwned"), write_denied),
        Case(
            "write to /tmp stays private",
            f"open('/tmp/{ESCAPE_NAME}', 'w').write('x')\nprint('wrote')\n",
            escape_file_absent,
        ),
        Case(
            "fill the disk: one file",
            "with open('big', 'wb') as f:\n    while True:\n        f.write(b'x' * 65536)\n",
            failed("file_size_limit", contains="limit exceeded"),
        ),
        Case(
            "fill the disk: many files",  # 64 MB at most, whatever the level
            "for i in range(64):\n    with open('part%d' % i, 'wb') as f:\n        f.write(b'x' * 2**20)\n"
            "print('wrote 64 MB')\n",
            disk_capped,
        ),
        Case(
            "too many open files",
            "fs = [open('f%d' % i, 'w') for i in range(10000)]\n",
            failed("error", contains="Too many open files"),
        ),
        Case("network socket to 127.0.0.1", loopback_connect, network_blocked),
        Case(
            "kill the parent",
            "import os\ntry:\n    os.kill(os.getppid(), 9)\nexcept OSError as e:\n    print(type(e).__name__)\nprint('alive')\n",
            contained,
        ),
        # Linux never delivers kill(-1) to the caller itself; the private uid keeps it to this run
        Case(
            "kill every process it may",
            "import os\ntry:\n    os.kill(-1, 9)\nexcept OSError:\n    pass\nprint('alive')\n",
            succeeded("alive"),
        ),
        Case("killpg its own group", "import os\nos.killpg(0, 9)\nprint('alive')\n", contained),
        Case(
            "raise its rlimits",
            "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (10**6, 10**6))\n",
            failed("error", contains="ValueError"),
        ),
        Case(
            "become root",
            "import os\nos.setuid(0)\n",
            failed("error", contains="PermissionError"),
        ),
        Case(
            "ignore SIGTERM and SIGXCPU, then spin",
            "import signal\nfor s in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT):\n    signal.signal(s, signal.SIG_IGN)\n"
            + SPIN,
            failed("cpu_limit", "timeout", "killed"),
        ),
        Case(
            "ctypes segfault",
            "import ctypes\nctypes.string_at(0)\n",
            failed("killed", contains="SIGSEGV"),
        ),
        Case("sys.exit(0)", "import sys\nprint('done')\nsys.exit(0)\n", prints("done")),
        Case(
            "sys.exit(5)",
            "import sys\nsys.exit(5)\n",
            failed("error", contains="exited with code 5"),
        ),
        Case(
            "sys.exit('message')",
            "import sys\nsys.exit('bad input')\n",
            failed("error", contains="bad input"),
        ),
        Case("syntax error", "print(1 +\n", failed("error", contains="SyntaxError")),
        Case(
            "invalid unicode output",
            "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe\\x80 end\\n')\n",
            succeeded(contains="ok \ufffd"),
        ),
        Case(
            "binary output",
            "import os, sys\nsys.stdout.buffer.write(os.urandom(200000))\n",
            succeeded(),
        ),
        Case("stdin read", "print(repr(input()))\n", fast(failed("error", contains="EOFError"))),
        Case("stdin read all", "import sys\nprint(repr(sys.stdin.read()))\n", fast(prints("''"))),
        Case(
            "sleep past wall time",
            "import time\ntime.sleep(100)\n",
            failed("timeout", contains="timed out after 3s"),
        ),
        Case(
            "orphaned sleeping child",
            "import subprocess\nsubprocess.Popen(['sleep', '100'])\nprint('parent done')\n",
            fast(prints("parent done")),
        ),
        Case(
            "orphan in its own session",
            "import subprocess\nsubprocess.Popen(['sleep', '100'], start_new_session=True,"
            " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\nprint('parent done')\n",
            fast(prints("parent done")),
        ),
        Case(
            "double-fork daemon",
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(100)\n"
            "    os._exit(0)\nprint('parent done')\n",
            fast(prints("parent done")),
        ),
        Case(
            "environment snooping",
            "import os\nprint(sorted(os.environ.items()))\n",
            succeeded(excludes=SECRET),
        ),
        Case(
            "traceback tail",
            "def g():\n    raise KeyError('missing')\ng()\n",
            failed("error", contains="KeyError: 'missing'"),
        ),
    ]


def few_processes(result: ToolResult, level: str) -> None:
    """Its own pid namespace: the sandbox's few processes, none of the host's."""
    assert result.ok and int(result.output) < 10, result


def runtime_defined(result: ToolResult, level: str) -> None:
    assert result.ok, result
    found = dict(line.split() for line in result.output.splitlines())
    for name in ("numpy", "sympy"):  # installed beside the trainer here (core dep, math extra)
        assert found[name] == str(importlib.util.find_spec(name) is not None), result
    for name in ("torch", "spear_rl", "transformers", "pytest"):
        assert found[name] == "False", result


def no_stray_processes() -> list[str]:
    """Processes left by the sandbox: children of this process, or live processes of the test uids.

    Killed orphans are zombies of the host's init until it reaps them; they run nothing (and the uid
    pool skips a uid until they are gone).
    """
    me = os.getpid()
    pool = range(TEST_UID_BASE, TEST_UID_BASE + 48)
    strays = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        state, parent = fields[0], int(fields[1])
        if parent == me and _is_resource_tracker(entry):
            continue  # multiprocessing's own bookkeeping child (env pools), alive as long as we are
        if parent == me or (uid in pool and state not in ("Z", "X")):
            strays.append(f"pid {entry} (state {state}, parent {parent}) uid {uid}")
    return strays


def _is_resource_tracker(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"multiprocessing.resource_tracker" in f.read()
    except OSError:
        return False


def safe_limits(level: str) -> SandboxLimits:
    """The test limits at `level`, or a skip with the sandbox's own reason when it cannot run here."""
    limits = level_limits(level)
    try:
        check_sandbox(limits)
    except SandboxUnavailableError as err:
        pytest.skip(f"the {level} level cannot run here: {err}")
    return limits


@pytest.fixture
def sandbox_here() -> None:
    """Tests of the tool's contract at the default level: skipped where no safe level can run."""
    safe_limits(TEST_LIMITS.isolation)


@pytest.fixture(scope="module", params=SAFE_LEVELS)
def battery_results(request, listener, host_secrets):
    limits = safe_limits(request.param)
    cases = battery(listener.getsockname()[1], host_secrets["checkpoint"])
    start = time.monotonic()
    results = run_code_batch([case.code for case in cases], limits, max_workers=8)
    by_name = {case.name: (case, result) for case, result in zip(cases, results, strict=True)}
    return request.param, by_name, time.monotonic() - start


@pytest.mark.parametrize("name", [case.name for case in battery(0)])
def test_hostile_program_is_contained(battery_results, name):
    level, results, _ = battery_results
    case, result = results[name]
    assert result.isolation == level, result
    case.check(result, level)
    assert len(result.output) <= TEST_LIMITS.max_output_chars
    # every limit stops the program near its limit, never much later
    assert result.seconds < TEST_LIMITS.wall_seconds + 2.0, result


def test_after_the_battery_the_test_process_is_unharmed(battery_results, listener, host_secrets):
    level, _, seconds = battery_results
    assert seconds < 30, f"battery took {seconds:.1f}s"
    with pytest.raises(BlockingIOError):  # nothing ever connected to the loopback listener
        listener.accept()
    for server in host_secrets["servers"]:  # nor to the host's Unix sockets
        with pytest.raises(BlockingIOError):
            server.accept()
    time.sleep(0.1)
    assert no_stray_processes() == []
    assert run_code("print('still fine')", level_limits(level)).output == "still fine\n"


FORKED_MEMORY = textwrap.dedent(f"""
    import os, time
    children = []
    for _ in range(6):
        pid = os.fork()
        if pid == 0:
            held = b"x" * ({CHILD_MB} * 2**20)  # written, so resident
            time.sleep(1.0)
            os._exit(0)
        children.append(pid)
    statuses = [os.waitpid(pid, 0)[1] for pid in children]
    print("survivors", sum(status == 0 for status in statuses))
""")


@pytest.mark.parametrize("level", SAFE_LEVELS)
def test_forked_children_cannot_exceed_memory_together(level):
    # its own run with a long wall limit: six forks filling memory take seconds on a busy machine
    limits = dataclasses.replace(safe_limits(level), wall_seconds=30, cpu_seconds=5)
    if describe_isolation(limits)["memory_bound"] == "per process":
        pytest.skip(f"no cgroup can be made here ({cgroups.support()[1]}): memory is per process")
    result = run_code(FORKED_MEMORY, limits)
    assert result.ok, result
    survivors = int(result.output.split()[-1])
    # all six holding at once would be 600 MB in a 256 MB group (each alone is under memory_mb)
    assert survivors * CHILD_MB <= limits.memory_mb, result


STATE_PATHS = ("/tmp", "/var/tmp", "/dev/shm", ".")


@pytest.mark.parametrize("level", SAFE_LEVELS)
def test_no_state_survives_between_calls(level):
    limits = safe_limits(level)
    marker = f"spear_state_{uuid.uuid4().hex[:12]}"
    write = (
        f"import os\nfor d in {STATE_PATHS!r}:\n    try:\n"
        f"        open(os.path.join(d, {marker!r}), 'w').write('kept')\n        print('wrote', d)\n"
        "    except OSError:\n        pass\n"
    )
    read = (
        f"import os\nfor d in {STATE_PATHS!r}:\n"
        f"    if os.path.exists(os.path.join(d, {marker!r})):\n        print('found', d)\n"
        "print('done')\n"
    )
    first = run_code(write, limits)
    assert first.ok and "wrote /tmp" in first.output and "wrote /dev/shm" in first.output, first
    second = run_code(read, limits)
    assert second.ok and second.output == "done\n", second
    for d in ("/tmp", "/var/tmp", "/dev/shm"):  # and nothing reached the host
        assert not os.path.exists(os.path.join(d, marker))


@pytest.mark.parametrize("level", SAFE_LEVELS)
def test_the_sandbox_runs_from_an_interpreter_installed_under_tmp(level, tmp_path_factory):
    """A fresh clone's venv under /tmp (the README's commands there): the level still runs."""
    safe_limits(level)  # skips where the level cannot run at all
    venv = tmp_path_factory.mktemp("venv_under_tmp")
    assert str(venv).startswith("/tmp/"), venv
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
        timeout=120,
    )
    program = textwrap.dedent(f"""
        import logging, sys
        from spear_rl.envs.math_tool.sandbox import SandboxLimits, describe_isolation, run_code
        logging.basicConfig(level=logging.INFO)
        limits = SandboxLimits(isolation={level!r})
        info = describe_isolation(limits)
        result = run_code("import sys; print(sys.prefix, 6 * 7)", limits)
        print(info["level"], info["python"], repr(result.output), result.isolation)
    """)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == [level, str(venv / "bin" / "python")], (
        done.stdout + done.stderr
    )
    assert f"'{venv} 42\\n'" in done.stdout and done.stdout.split()[-1] == level, done.stdout


# ---- the weaker levels: the process-escape cases again -----------------------------------------
ESCAPES = {
    "fork bomb",
    "thread bomb",
    "kill the parent",
    "kill every process it may",
    "orphan in its own session",
    "double-fork daemon",
    "memory bomb: list",
    "sleep past wall time",
    "read /etc/shadow",
    "environment snooping",
    "fill the disk: one file",
}


@pytest.mark.parametrize("level", UNSAFE_LEVELS)
def test_unsafe_levels_refuse_without_the_opt_in(level):
    with pytest.raises(
        ValueError, match=f"isolation '{level}' is unsafe.*bubblewrap.*allow_unsafe"
    ):
        SandboxLimits(isolation=level)


def test_weaker_levels_contain_process_escapes(listener):
    if not isolation.running_as_root():
        # without a private uid, kill(-1) or kill(getppid()) would reach the test process itself
        pytest.skip("the weaker levels are only safe to attack with a private uid (root)")
    runs = []  # (level, case, limits): both levels in one parallel batch
    for level in UNSAFE_LEVELS:
        limits = level_limits(level)
        try:
            check_sandbox(limits)
        except SandboxUnavailableError:
            continue  # that level cannot run here; nothing to attack
        cases = [c for c in battery(listener.getsockname()[1]) if c.name in ESCAPES]
        assert len(cases) == len(ESCAPES)
        runs += [(level, case, limits) for case in cases]
    if not runs:
        pytest.skip("neither unshare nor rlimits can run here")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda run: run_code(run[1].code, run[2]), runs))
    for (level, case, _), result in zip(runs, results, strict=True):
        case.check(result, level)
        assert result.isolation == level, result
    time.sleep(0.1)
    assert no_stray_processes() == []


# ---- the tool's own contract --------------------------------------------------------------------
def test_isolation_level_is_reported_and_bwrap_used_when_installed():
    if not isolation.find_tool("bwrap"):
        pytest.skip("bubblewrap is not installed here")
    assert isolation_level(TEST_LIMITS) == "bwrap"  # wherever the interpreter lives, root or not
    info = describe_isolation(TEST_LIMITS)
    assert info["safe"] is True and info["python"] == sys.executable


def test_unknown_isolation_level_is_a_clear_error():
    with pytest.raises(ValueError, match="isolation must be one of auto, bwrap, unshare, rlimits"):
        SandboxLimits(isolation="docker")
    with pytest.raises(ValueError, match="unknown sandbox limit.*cpu_secs.*known:"):
        SandboxLimits.from_dict({"cpu_secs": 3})
    with pytest.raises(ValueError, match="memory_mb must be > 0"):
        SandboxLimits(memory_mb=0)


def test_empty_and_oversized_code_are_tool_messages():
    assert run_code("   ").reason == "invalid_code"
    huge = run_code("x = 1\n" * 30_000, SandboxLimits(max_code_chars=1000))
    assert huge.reason == "invalid_code" and "too long" in huge.output


def test_stdout_is_returned_and_error_shows_stdout_then_traceback_tail(sandbox_here):
    ok = run_code("print(sum(range(101)))", TEST_LIMITS)
    assert ok == ToolResult("5050\n", True, "ok", ok.seconds, isolation_level(TEST_LIMITS))
    err = run_code("print('partial')\nraise ValueError('boom')", TEST_LIMITS)
    assert err.output.startswith("partial\nTraceback") and err.output.endswith("ValueError: boom")
    quiet = run_code("x = 1", TEST_LIMITS)
    assert quiet.ok and "no output" in quiet.output


def test_truncate_middle_keeps_both_ends_and_counts_what_it_cut():
    text = "A" * 50 + "B" * 1000 + "C" * 50
    cut = truncate_middle(text, 120)
    assert len(cut) <= 120 and cut.startswith("A" * 40) and cut.endswith("C" * 40)
    kept = cut.count("A") + cut.count("B") + cut.count("C")
    assert f"[{len(text) - kept} chars truncated]" in cut
    assert truncate_middle("short", 120) == "short"


def test_parallel_runs_do_not_block_each_other(sandbox_here):
    # each program prints when it started and ended its sleep; run one after another, every start
    # would come after the previous end. No threshold on the total time (the machine may be busy).
    program = "import time\nstart = time.time()\ntime.sleep(2)\nprint({i}, start, time.time())"
    limits = dataclasses.replace(TEST_LIMITS, wall_seconds=30)  # start-up is slow on a loaded box
    results = run_code_batch([program.format(i=i) for i in range(6)], limits, max_workers=6)
    lines = [r.output.split() for r in results]
    assert [line[0] for line in lines] == [str(i) for i in range(6)]
    starts, ends = [float(line[1]) for line in lines], [float(line[2]) for line in lines]
    assert max(starts) < min(ends)  # all six were sleeping at the same moment


def test_a_broken_sandbox_is_a_tool_message_not_a_crash(monkeypatch, sandbox_here):
    def explode(*args, **kwargs):
        raise OSError("no such tool")

    monkeypatch.setattr(isolation, "sandbox_command", explode)
    result = run_code("print(1)", TEST_LIMITS)
    assert not result.ok and result.reason == "sandbox_error" and "no such tool" in result.output


def test_signal_handling_of_the_test_process_is_untouched():
    # compared with the handler at import, not with a fixed value: a test process started in the
    # background by a non-interactive shell inherits SIGINT ignored
    assert signal.getsignal(signal.SIGINT) == SIGINT_AT_IMPORT


def without_tool(monkeypatch, missing: str) -> None:
    real = isolation.find_tool
    monkeypatch.setattr(
        isolation, "find_tool", lambda name: None if name == missing else real(name)
    )
    monkeypatch.setattr(sandbox, "_resolved", {})  # probe again under the patched tools
    monkeypatch.setattr(sandbox, "_resolve_errors", {})


def test_missing_bwrap_refuses_unless_opted_in_and_then_warns(monkeypatch, caplog):
    without_tool(monkeypatch, "bwrap")
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
        check_sandbox(SandboxLimits(isolation="bwrap"))
    # no silent step down: auto refuses, says how to get a safe sandbox and how to opt in
    with pytest.raises(SandboxUnavailableError, match="install bubblewrap.*allow_unsafe=true"):
        check_sandbox(TEST_LIMITS)
    refused = run_code("print(3 * 3)", TEST_LIMITS)
    assert refused.reason == "sandbox_error" and "allow_unsafe" in refused.output, refused
    opted_in = dataclasses.replace(TEST_LIMITS, allow_unsafe=True)
    with caplog.at_level(logging.WARNING, logger=sandbox.__name__):
        level = isolation_level(opted_in)
    assert level in UNSAFE_LEVELS
    assert f"isolation: {level} (UNSAFE" in caplog.text and "bwrap: " in caplog.text
    assert "install bubblewrap" in caplog.text
    result = run_code("print(3 * 3)", opted_in)
    assert result.output == "9\n" and result.isolation == level


def test_rlimits_still_apply_without_prlimit(monkeypatch, sandbox_here):
    without_tool(monkeypatch, "prlimit")  # the preexec_fn fallback sets them
    memory, threads = run_code_batch(["b = bytearray(2 * 1024**3)", SPAWN_THREADS], TEST_LIMITS)
    assert memory.reason == "memory_limit" and threads.reason == "process_limit"


SPAWN_THREADS = (
    "import threading, time\n"
    "while True:\n"
    "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
)


def test_cgroups_left_by_a_killed_trainer_are_removed():
    version, why = cgroups.support()
    if version is None:
        pytest.skip(f"no cgroup can be made here: {why}")
    # a group named for a pid that no longer exists, as a trainer killed mid-call leaves it
    dead = _reaped_pid()
    with cgroups.make(version, memory_mb=64, max_processes=4) as group:
        stale = [
            d.replace(f"spear_sandbox_{os.getpid()}_", f"spear_sandbox_{dead}_") for d in group.dirs
        ]
    for path in stale:
        os.mkdir(path)
    cgroups._remove_stale(version)
    assert [p for p in stale if os.path.exists(p)] == []


def _reaped_pid() -> int:
    """The pid of a child that has exited and been reaped (so /proc has no entry for it)."""
    child = subprocess.Popen(["/bin/sh", "-c", "exit 0"])
    child.wait()
    assert not os.path.exists(f"/proc/{child.pid}")
    return child.pid
