"""Server settings: one dataclass that the CLI fills and the app reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from resnest.serve.model import ModelSpec


@dataclass(frozen=True)
class ServeConfig:
    """Everything the server needs; defaults are the CLI's defaults."""

    model: ModelSpec
    model_name: str = "resnest"
    host: str = "0.0.0.0"
    port: int = 8000
    labels: list[str] = field(default_factory=list)
    max_batch_size: int = 8
    max_queue_delay_ms: float = 5.0
    max_queue_size: int = 64
    max_request_batch: int = 32
    max_body_bytes: int = 16 * 1024 * 1024
    max_image_pixels: int = 25_000_000
    decode_threads: int = 2
    shutdown_timeout_s: float = 30.0
    access_log: bool = False


def read_labels(path: Path) -> list[str]:
    """One class name per line, in class-index order; blank lines are not classes."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
