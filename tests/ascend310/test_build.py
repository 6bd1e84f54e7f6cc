"""The CMake build: what is built here, what is skipped and why, and the C++ unit test."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.ascend310.conftest import INFER_DIR, Rl310Build


def test_build_builds_preprocessing_and_reports_skipped_infer(rl310_build: Rl310Build) -> None:
    status = (rl310_build.build_dir / "rl310_build_status.txt").read_text()
    assert "rl310_preprocess: built" in status
    assert "rl310_preprocess_dump: built" in status
    assert rl310_build.preprocess_dump.is_file()
    assert (rl310_build.build_dir / "rl310_preprocess_unittest").is_file()
    # The pip wheel has no C++ inference API: the 310 program must be skipped, loudly.
    assert "rl310_infer: SKIPPED: MindSpore C++ inference API not found" in status
    assert "include/api/model.h does not exist" in status
    assert "rl310_infer was NOT built" in rl310_build.stdout
    assert not (rl310_build.build_dir / "rl310_infer").exists()


def test_ctest_runs_the_cpp_unit_test(rl310_build: Rl310Build) -> None:
    proc = subprocess.run(["ctest", "--output-on-failure"], cwd=rl310_build.build_dir,
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "100% tests passed" in proc.stdout


def test_require_mindspore_fails_clearly_without_the_api(tmp_path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "RL310_REQUIRE_MINDSPORE": "1"}
    env.pop("MS_PATH", None)
    proc = subprocess.run(["bash", str(INFER_DIR / "build.sh"), str(tmp_path / "b")], env=env,
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "MindSpore C++ inference API not found" in proc.stderr
    assert "cmake configure failed" in proc.stderr


def test_configure_names_what_is_missing_under_ms_path(tmp_path) -> None:
    # Configure only (no compile): the status file says why rl310_infer is skipped.
    missing = tmp_path / "no-mindspore-here"
    proc = subprocess.run(["cmake", "-S", str(INFER_DIR), "-B", str(tmp_path / "b"),
                           f"-DMINDSPORE_PATH={missing}"],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = (tmp_path / "b" / "rl310_build_status.txt").read_text()
    assert f"{missing}/include/api/model.h does not exist" in status
    assert "NOT building rl310_infer" in proc.stderr


def run_infer_script(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "RL310_BUILD_DIR": str(tmp_path / "b"),
           "RL310_WORK_DIR": str(tmp_path / "work")}
    env.pop("MS_PATH", None)
    return subprocess.run(["bash", str(INFER_DIR / "run_infer_310.sh"), *args], env=env,
                          check=False, capture_output=True, text=True, timeout=300)


def test_run_infer_310_validates_its_arguments(tmp_path) -> None:
    mindir = tmp_path / "m.mindir"
    mindir.write_bytes(b"")
    cases = [
        ((), "usage: bash"),
        ((str(tmp_path / "none.mindir"), str(tmp_path)), "MINDIR '"),
        ((str(mindir), str(tmp_path / "nodata")), "DATA_PATH '"),
        ((str(mindir), str(tmp_path), "gpu0"), "DEVICE_ID 'gpu0' must be a non-negative integer"),
        ((str(mindir), str(tmp_path), "0", "0"), "BATCH_SIZE '0' must be a positive integer"),
    ]
    for args, message in cases:
        proc = run_infer_script(tmp_path, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr


def test_run_infer_310_stops_at_the_build_without_mindspore(tmp_path) -> None:
    mindir = tmp_path / "m.mindir"
    mindir.write_bytes(b"")
    proc = run_infer_script(tmp_path, str(mindir), str(tmp_path), "0", "4")
    assert proc.returncode != 0
    assert "MindSpore C++ inference API not found" in proc.stderr
    assert not (tmp_path / "work").exists()  # nothing ran past the build


@pytest.mark.integration
def test_rl310_infer_compiles_and_links_against_a_real_mindspore_api(tmp_path) -> None:
    """The 310 program against MindSpore's own C++ API (the mindspore-ascend 1.10 wheel's
    headers and libmindspore.so): it cannot run here, but every API call must compile and link."""
    fetch = subprocess.run(["bash", str(INFER_DIR / "fetch_mindspore_api.sh")],
                           env={**os.environ, "PYTHON": sys.executable},
                           check=False, capture_output=True, text=True, timeout=900)
    assert fetch.returncode == 0, fetch.stderr
    ms_path = fetch.stdout.strip().splitlines()[-1]
    env = {**os.environ, "MS_PATH": ms_path, "RL310_REQUIRE_MINDSPORE": "1"}
    build_dir = tmp_path / "b"
    proc = subprocess.run(["bash", str(INFER_DIR / "build.sh"), str(build_dir)], env=env,
                          check=False, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"rl310_infer: built (MindSpore at {ms_path})" in proc.stdout
    undefined = subprocess.run(["nm", "-C", "--undefined-only", str(build_dir / "rl310_infer")],
                               check=True, capture_output=True, text=True).stdout
    for call in ("mindspore::Serialization::Load(", "mindspore::Model::Build(mindspore::GraphCell",
                 "mindspore::Model::Predict(", "mindspore::Model::GetInputs()",
                 "mindspore::AscendDeviceInfo::SetDeviceID(unsigned int)",
                 "mindspore::AscendDeviceInfo::SetOutputType(mindspore::DataType)"):
        assert call in undefined, f"{call} is not resolved from libmindspore.so"
    # main.cc uses MindSpore's (old) string ABI; only the C interface crosses to OpenCV's side.
    main_obj = build_dir / "CMakeFiles" / "rl310_infer.dir" / "src" / "main.cc.o"
    symbols = subprocess.run(["nm", str(main_obj)], check=True, capture_output=True,
                             text=True).stdout
    assert "__cxx11" not in symbols
    assert "rl310_preprocess_file" in symbols
