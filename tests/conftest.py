"""Real servers on loopback for the tests: the gateway as a subprocess, a fake upstream."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# stored responses (the Responses API's SQLite file) go to a fresh folder, not the user's data dir
os.environ.setdefault("TANDEM_DATA_DIR", tempfile.mkdtemp(prefix="tandem-test-data-"))


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, args: list[str], port: int, env: dict[str, str] | None = None, log_name: str = "server") -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"tandem-test-{log_name}-{port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait(self, path: str, timeout: float, want_status: int | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early; log:\n{self.log_text()}")
            try:
                response = httpx.get(self.base + path, timeout=2)
                if want_status is None or response.status_code == want_status:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout} s; log:\n{self.log_text()}")

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


@pytest.fixture(scope="session")
def fake_upstream():
    port = free_port()
    server = Server(["-m", "bench.fake_upstream", "--port", str(port)], port, log_name="upstream")
    server.wait("/v1/models", 30)
    yield server
    server.stop()


def start_gateway(policy: Path, env: dict[str, str] | None = None, ready_timeout: float = 120) -> Server:
    port = free_port()
    server = Server(["-m", "gateway.cli", "serve", "--port", str(port), "--policy", str(policy)], port, env, "gateway")
    server.wait("/healthz", ready_timeout, want_status=200)
    return server


@pytest.fixture(scope="session")
def gateway(fake_upstream):
    """Gateway on the fake-upstream policy (no local generation model)."""
    server = start_gateway(FIXTURES / "upstream_policy.yaml", {"UPSTREAM_BASE": fake_upstream.base + "/v1"})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def embedded_gateway():
    """Gateway on the default policy: the real embedded models (integration tests)."""
    server = start_gateway(ROOT / "policies" / "default.yaml", ready_timeout=300)
    yield server
    server.stop()


def tiny_diffusion_backend(name: str):
    """A diffusion backend over a tiny random DiffusionGemma and the character tokenizer:
    for what must hold whatever the model (request mapping, validity, streaming)."""
    from diffusion_engine.adapters.diffusion_gemma import DiffusionGemmaDenoiser
    from diffusion_engine.structured.tiny_tokenizer import tiny_tokenizer
    from diffusion_engine.testing import tiny_diffusion_gemma
    from gateway.backends.diffusion import DiffusionBackend
    from router.policy import BackendSpec

    spec = BackendSpec(name=name, kind="diffusion", model="diffusion_gemma:tiny", api_base=None,
                       api_key=None, timeout_s=60, max_retries=0, params={}, engine={"block_size": 8})
    backend = DiffusionBackend(spec)
    backend.attach(DiffusionGemmaDenoiser(tiny_diffusion_gemma(0)), tiny_tokenizer())
    return backend
