"""One env worker process: `python -m spear_rl.envs.pool.process_worker FD`.

A fresh interpreter that imports only the env side of spear-rl (not torch, not the script that
started the run). Over the socket FD it receives the parent's `sys.path` (so envs defined next to
the caller import here too), then the pickled env factory, then rounds of jobs; it answers each job
as it finishes. It exits when told to, or when the parent's end of the socket closes.
"""

from __future__ import annotations

import pickle
import signal
import sys
from multiprocessing.connection import Connection

from spear_rl.envs.pool.host import RELEASE, EnvHost


def serve(conn: Connection) -> None:
    # Ctrl-C reaches the whole process group: the trainer handles it and closes the pool
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.path[:0] = [p for p in conn.recv() if p not in sys.path]
    host = EnvHost(pickle.loads(conn.recv_bytes()))
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the parent is gone
                break
            if message is None:
                break
            for op, slot, arg in message:
                reply = host.handle(op, slot, arg)
                try:
                    conn.send(reply)
                except Exception as err:  # an env put something unpicklable in its result
                    conn.send(("error", f"env_error: unpicklable result: {err}"[:240], None))
    finally:
        host.handle(RELEASE, -1, None)


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
