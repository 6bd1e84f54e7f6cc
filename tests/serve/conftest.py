"""Fixtures: a tiny trained ResNeSt exported to MINDIR, and real servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 32


@dataclass
class TinyModel:
    dir: Path
    reference: dict[str, np.ndarray]

    @property
    def mindirs(self) -> list[Path]:
        return sorted(self.dir.glob("model_b*.mindir"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    out = tmp_path_factory.mktemp("serve-model")
    subprocess.run([sys.executable, "-m", "tests.serve.build_tiny_model", str(out),
                    "--image-size", str(IMAGE_SIZE), "--batches", "1,4"],
                   cwd=REPO, check=True, capture_output=True, timeout=600)
    with np.load(out / "reference.npz") as data:
        reference = {key: data[key] for key in data.files}
    return TinyModel(out, reference)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, Any]:
    """One request; returns (status, parsed JSON or text)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, ctype = response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get_content_type()
    return status, json.loads(raw) if ctype == "application/json" else raw.decode()


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def start_server(args: list[str], log_path: Path, ready_timeout: float = 300) -> Server:
    """Start ``python -m resnest.serve ARGS`` on a free port; wait until /v2/health/ready."""
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "resnest.serve", "--host", "127.0.0.1", "--port", str(port),
             *args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if http("GET", f"{server.url}/v2/health/ready", timeout=5)[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.3)
    server.stop()
    raise AssertionError(f"server not ready in {ready_timeout}s:\n{server.log()}")


@pytest.fixture(scope="session")
def server(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default server: both MINDIRs (batch 1 and 4), labels, a 1 MiB body limit."""
    args = [arg for path in tiny_model.mindirs for arg in ("--model", str(path))]
    srv = start_server([*args, "--labels", str(tiny_model.dir / "labels.txt"),
                        "--max-batch-size", "4", "--max-queue-delay-ms", "2",
                        "--max-queue-size", "256", "--max-body-mb", "1",
                        "--max-image-pixels", "1000000"],
                       tmp_path_factory.mktemp("serve-log") / "server.log")
    yield srv
    assert srv.stop() == 0, srv.log()
