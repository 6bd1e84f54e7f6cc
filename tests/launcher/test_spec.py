"""JobSpec validation: one clear line per problem, before anything is rendered."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.spec import JobSpec, SpecError

OK = {"data_dir": "/d", "output_dir": "/o"}


def problems(**fields) -> list[str]:
    return JobSpec(**{**OK, **fields}).problems()


def test_defaults_with_paths_are_valid() -> None:
    assert problems() == []
    assert JobSpec(**OK).world_size == 1


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_ascend_allowed_counts(n: int) -> None:
    assert problems(device_kind="ascend", devices_per_node=n) == []


@pytest.mark.parametrize("n", [3, 5, 6, 7, 16])
def test_ascend_other_counts_rejected(n: int) -> None:
    (line,) = problems(device_kind="ascend", devices_per_node=n)
    assert f"devices_per_node {n} is not allowed" in line and "1, 2, 4 or 8" in line


@pytest.mark.parametrize("ids", [[4, 5, 6, 7], [0, 1], [6, 7], [2]])
def test_ascend_job_within_one_ring(ids: list[int]) -> None:
    assert problems(device_kind="ascend", devices_per_node=len(ids), device_ids=ids) == []


@pytest.mark.parametrize("ids", [[2, 3, 4, 5], [3, 4], [0, 1, 2, 9]])
def test_ascend_job_across_rings_rejected(ids: list[int]) -> None:
    found = problems(device_kind="ascend", devices_per_node=len(ids), device_ids=ids)
    assert len(found) == 1 and "device_ids" in found[0]


def test_world_size_multi_node() -> None:
    assert JobSpec(nodes=2, devices_per_node=8, device_kind="gpu", **OK).world_size == 16


@pytest.mark.parametrize("name", ["Upper", "a;b", "a b", "-lead", "trail-", "", "x" * 41,
                                  "a'b", "$(id)", "new\nline"])
def test_bad_job_names(name: str) -> None:
    (line,) = problems(name=name)
    assert line.startswith(f"name {name!r} is not a valid job name")


def test_every_problem_listed_at_once() -> None:
    found = JobSpec(name="BAD", nodes=0, time_limit="soon", partition="p q", max_restarts=-1,
                    env={"1X": "v"}, overrides=["novalue"]).problems()
    assert len(found) == 9, found


@pytest.mark.parametrize("field", ["data_dir", "output_dir", "config"])
def test_newline_in_path_rejected(field: str) -> None:
    (line,) = problems(**{field: "/a\nb"})
    assert "newline" in line


def test_validate_raises_with_all_lines() -> None:
    with pytest.raises(SpecError) as err:
        JobSpec(name="A").validate()
    assert len(err.value.problems) == 3


def test_yaml_roundtrip_and_unknown_field(tmp_path: Path) -> None:
    import yaml

    spec = JobSpec(name="x", nodes=2, env={"A": "1"}, **OK)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec.to_dict()))
    assert JobSpec.from_yaml(path) == spec
    path.write_text("nodez: 2\n")
    with pytest.raises(SpecError, match="unknown job spec field 'nodez'"):
        JobSpec.from_yaml(path)
    path.write_text("env: [1, 2]\n")
    with pytest.raises(SpecError, match="job.yaml: env must be a mapping of strings to strings, not a list"):
        JobSpec.from_yaml(path)


def test_script_args_order() -> None:
    spec = JobSpec(config="/c.yaml", overrides=["a=1"], args=["--x"], **OK)
    assert spec.script_args() == ["--data-dir", "/d", "--output-dir", "/o", "--config", "/c.yaml",
                                  "--set", "a=1", "--x"]


def test_export_is_one_process() -> None:
    assert JobSpec(task="export", args=["--checkpoint", "c"]).problems() == []
    (line,) = JobSpec(task="export", devices_per_node=8, device_kind="gpu").problems()
    assert "an export job runs one process, not 8" in line
