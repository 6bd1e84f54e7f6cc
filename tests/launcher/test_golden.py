"""Golden files for rendered scripts and rank tables.

Regenerate after an intended template change, then review the diff:
    RLAUNCH_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/launcher/test_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from launcher.backends import get_backend
from launcher.ranktable import build_rank_table, check_rank_table
from launcher.spec import JobSpec

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("RLAUNCH_REGEN_GOLDEN") == "1"

BASE = {
    "data_dir": "/data/imagenet", "output_dir": "/scratch/run 1", "code_dir": "/opt/rlaunch",
    "python": "/opt/venv/bin/python", "overrides": ["epochs=270", "net_name=resnest50"],
}
CASES = {
    "slurm_gpu8.sh": JobSpec(name="rn50", backend="slurm", device_kind="gpu", devices_per_node=8,
                             time_limit="2-00:00:00", partition="gpu", account="vision",
                             env={"NCCL_DEBUG": "WARN"}, **BASE),
    "slurm_gpu2x8.sh": JobSpec(name="rn50", backend="slurm", device_kind="gpu", nodes=2,
                               devices_per_node=8, qos="high", constraint="a100&ib",
                               master_port=29500, max_restarts=5, **BASE),
    "slurm_cpu4.sh": JobSpec(name="cpu-job", backend="slurm", device_kind="cpu",
                             devices_per_node=4, **BASE),
    "slurm_ascend8.sh": JobSpec(name="rn50-npu", backend="slurm", device_kind="ascend",
                                devices_per_node=8, nodes=2, **BASE),
    "slurm_ascend4_upper.sh": JobSpec(name="rn50-npu", backend="slurm", device_kind="ascend",
                                      devices_per_node=4, device_ids=[4, 5, 6, 7],
                                      backend_options={"ascend_gres": "davinci",
                                                       "signal_seconds": 300}, **BASE),
    "local_cpu2.sh": JobSpec(name="demo", backend="local", device_kind="cpu", devices_per_node=2,
                             master_port=29501, **BASE),
}


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing golden file {path}: run with RLAUNCH_REGEN_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} differs from its golden file; if intended, regenerate (see module docstring)"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_script_matches_golden(name: str) -> None:
    spec = CASES[name].validate()
    backend = get_backend(spec.backend)
    opts = backend.options_of(spec)
    if spec.backend != "local":  # local checks that /data exists on this machine
        assert backend.problems(spec, opts) == []
    rendered = backend.render(spec, opts)
    (script,) = rendered.files.values()
    check_golden(name, script)


def test_render_is_pure_and_repeatable() -> None:
    spec = CASES["slurm_gpu8.sh"]
    backend = get_backend("slurm")
    opts = backend.options_of(spec)
    assert backend.render(spec, opts).files == backend.render(spec, opts).files


def test_rank_table_two_servers_matches_golden() -> None:
    ips = {
        # MindSpore: ranks follow the dictionary order of server_id ("10.0.0.10" < "10.0.0.9").
        "10.0.0.10": {i: f"192.168.1.{i + 1}" for i in range(8)},
        "10.0.0.9": {i: f"192.168.0.{i + 1}" for i in range(8)},
    }
    text = build_rank_table(ips, list(range(8))).render()
    data = json.loads(text)
    assert check_rank_table(data) == []
    assert [s["server_id"] for s in data["server_list"]] == ["10.0.0.10", "10.0.0.9"]
    assert data["server_list"][1]["device"][0]["rank_id"] == "8"
    check_golden("rank_table_2x8.json", text)
