"""A Ray cluster on this machine for tests: nodes started with ``ray start --block``, each a session of its
own, stopped by process id (only what a test started is ever killed). tests/test_fanout.py runs a head and
a worker node; tests/test_tuning.py one head node for its searches."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lib.paths import PROJECT_ROOT

RAY = str(Path(sys.executable).with_name("ray"))
# A test cluster without token authentication, nothing sent anywhere, nothing read from ~/.ray.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}


def ray_env() -> dict:
    """This environment for a node or a driver of the test cluster: this checkout's lib first."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    path = [str(PROJECT_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**env, **RAY_ENV, "PYTHONPATH": os.pathsep.join(path)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Processes of the session a ``ray start --block`` we launched leads (its raylet, workers, ...)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after the command: state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


def prioritise_session(pid: int) -> None:
    """Nice -10 for the autogroup of the session ``pid`` leads (Linux; root): all its processes, later ones too."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text("-10")
    except OSError:  # no autogroups, or not allowed: plain fair sharing
        pass


class NodeExited(AssertionError):
    pass


class Cluster:
    def __init__(self, tmp: Path):
        self.tmp, self.port, self.nodes, self.ids = tmp, free_port(), [], []
        self.address = f"127.0.0.1:{self.port}"

    def start_node(self, *extra, wrap=(), attempts=3, cpus=1) -> list[str]:
        """Start the head (first call) or a worker node; the alive node ids once it has joined.

        A raylet waits 15 s at most (hard-coded) for its dashboard agent to write its port file, also when
        the ports are given, and the agent's imports (~5 CPU-s, beside four other Ray processes starting)
        miss it on two cores while the other test worker trains (ray-project/ray#65983; every attempt of
        a CI run failed so). The node is a session of its own, and with the kernel's autogroup scheduling
        a session shares the CPU equally with every other one, whatever its processes' nice values: where
        allowed (root), the node's session gets a higher priority than the tests beside it, so its start
        no longer races them. A node that still fails is started again.
        """
        for attempt in range(attempts):
            log = open(self.tmp / f"node{len(self.nodes)}-{attempt}.log", "w")
            where = ["--head", f"--port={self.port}", "--include-dashboard=false"] if not self.ids else \
                [f"--address={self.address}"]
            cmd = [*wrap, RAY, "start", *where, "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
                   "--object-store-memory=100000000", "--disable-usage-stats", "--block", *extra]
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ray_env(), start_new_session=True)
            prioritise_session(proc.pid)
            self.nodes.append(proc)
            try:
                return self.wait_for(len(self.ids) + 1)
            except NodeExited:
                self._stop([proc])
                self.nodes.remove(proc)
        raise AssertionError(f"a ray node did not start in {attempts} attempts: see {self.tmp}")

    def wait_for(self, n: int, timeout: float = 240.0) -> list[str]:
        """Node ids once ``n`` nodes are alive (asked through a short-lived driver in a subprocess)."""
        probe = ("import json, ray; ray.init(address=%r, log_to_driver=False, configure_logging=False); "
                 "print('NODES', json.dumps([x['NodeID'] for x in ray.nodes() if x['Alive']]))" % self.address)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(p.poll() is not None for p in self.nodes):
                raise NodeExited(f"a ray node exited: see {self.tmp}")
            r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ray_env(),
                               timeout=120)
            # the marked line: a raylet starting the probe's worker may log to its stdout too
            marked = [line for line in r.stdout.splitlines() if line.startswith("NODES ")]
            if r.returncode == 0 and marked:
                ids = json.loads(marked[-1].split(" ", 1)[1])
                if len(ids) >= n:
                    self.ids = ids
                    return ids
            time.sleep(2)
        raise AssertionError(f"{n} ray nodes did not come up in {timeout} s: see {self.tmp}")

    @staticmethod
    def _stop(procs) -> None:
        for proc in procs:  # SIGTERM: `ray start --block` stops what it started
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        # ... gracefully: its raylet and agents take ~30 s to go, so after a short grace the rest is killed
        deadline = time.time() + 2
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        for proc in procs:  # what is left of those sessions (workers in their own process groups)
            for pid in session_pids(proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in procs:
            proc.wait(timeout=30)

    def stop(self) -> None:
        self._stop(self.nodes)
