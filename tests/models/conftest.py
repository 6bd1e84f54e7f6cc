"""Fixtures for the model tests: the PyTorch reference venv, MindSpore execution modes, data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

MODELS_TESTS = Path(__file__).resolve().parent
REPO = MODELS_TESTS.parents[1]
REFERENCE_PYTHON = REPO / ".venv-ref" / "bin" / "python"
REFERENCE_SCRIPT = MODELS_TESTS / "torch_reference.py"
TIMM_FIXTURE = MODELS_TESTS / "fixtures" / "resnest14d_timm.json"


@pytest.fixture(scope="session")
def reference_python() -> Path:
    """The venv holding torch 2.13 + resnest 0.0.5; scripts/setup.sh makes it (CI runs it)."""
    if not REFERENCE_PYTHON.is_file():
        pytest.fail(f"{REFERENCE_PYTHON} is missing: run `bash scripts/setup.sh` first")
    return REFERENCE_PYTHON


def _with_mode(mode_name: str):
    import mindspore

    from resnest.distributed import select_device

    previous = mindspore.get_context("mode")
    select_device("CPU")
    mindspore.set_context(mode=getattr(mindspore, mode_name))
    yield mindspore
    mindspore.set_context(mode=previous)


@pytest.fixture
def graph_mode():
    """GRAPH_MODE for full-size forwards: compiling once beats PyNative's per-op dispatch."""
    yield from _with_mode("GRAPH_MODE")


@pytest.fixture
def pynative_mode():
    """PYNATIVE_MODE for small nets and many input shapes (no compile per shape)."""
    yield from _with_mode("PYNATIVE_MODE")


@pytest.fixture(scope="session")
def timm_fixture() -> dict:
    return json.loads(TIMM_FIXTURE.read_text())


@pytest.fixture
def timm14d_state(timm_fixture) -> dict[str, np.ndarray]:
    """timm-named synthetic resnest14d weights (names/shapes recorded from timm itself)."""
    from tests.models.synthetic_weights import synthetic_state_dict

    return synthetic_state_dict(timm_fixture["seed"], timm_fixture["tensors"])
