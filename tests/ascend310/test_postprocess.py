"""resnest.postprocess and resnest.imagenet_labels on hand-made result and label files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from resnest import imagenet_labels, postprocess
from tests.ascend310.conftest import write_photo


def write_results(result_dir: Path, logits: dict[str, list[float]]) -> None:
    result_dir.mkdir(parents=True, exist_ok=True)
    for name, row in logits.items():
        np.asarray(row, dtype=np.float32).tofile(result_dir / f"{name}_0.bin")


def test_counts_top1_and_top5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Seven classes. a: right at rank 1; b: rank 3; c: rank 6 (outside the top 5); d: rank 1.
    write_results(tmp_path / "r", {
        "a": [0.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        "b": [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
        "c": [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
        "d": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    })
    (tmp_path / "r" / "a_1.bin").write_bytes(b"other outputs are ignored")
    labels = {"a": 1, "b": 2, "c": 5, "d": 6, "not_inferred": 0}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    out = tmp_path / "acc.json"
    rc = postprocess.main(["--result-dir", str(tmp_path / "r"), "--label-file",
                           str(tmp_path / "labels.json"), "--output", str(out)])
    captured = capsys.readouterr()
    assert rc == 0
    assert captured.out.strip() == "Total data: 4, top1 accuracy: 0.5, top5 accuracy: 0.75"
    assert "1 labelled image(s) have no result file" in captured.err
    result = json.loads(out.read_text())
    assert result["total"] == 4 and result["top1_correct"] == 2 and result["top5_correct"] == 3
    assert result["num_classes"] == 7 and result["labels_without_result"] == 1


@pytest.mark.parametrize(("setup", "message"), [
    (lambda d: None, "is not a folder"),
    (lambda d: (d / "r").mkdir(), "no *_0.bin result files"),
    (lambda d: write_results(d / "r", {"x": [1, 2, 3], "y": [1, 2]}), "file sizes (bytes) [8, 12]"),
    (lambda d: (d / "r").mkdir() or (d / "r" / "x_0.bin").write_bytes(b"12345"), "file sizes (bytes) [5]"),
    (lambda d: write_results(d / "r", {"stranger": [1, 2, 3]}), "have no label, e.g. 'stranger'"),
    (lambda d: write_results(d / "r", {"a": [1, 2]}), "label 5 is out of range for 2 logits"),
])
def test_bad_results_give_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          setup, message: str) -> None:
    setup(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps({"a": 5}))
    rc = postprocess.main(["--result-dir", str(tmp_path / "r"), "--label-file",
                           str(tmp_path / "labels.json"), "--output", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert rc == 1
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.parametrize("content", ["not json", '["a", 1]', '{"a": -1}', '{"a": "1"}',
                                     '{"a": true}'])
def test_bad_label_file_is_rejected(tmp_path: Path, content: str) -> None:
    (tmp_path / "labels.json").write_text(content)
    with pytest.raises(postprocess.PostprocessError, match="label file"):
        postprocess.load_labels(tmp_path / "labels.json")


def test_label_file_numbers_classes_in_sorted_folder_order(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    val = tmp_path / "val"
    write_photo(val / "n02" / "ILSVRC2012_val_00000003.JPEG", 8, 8, seed=0)
    write_photo(val / "n01" / "ILSVRC2012_val_00000002.JPEG", 8, 8, seed=1)
    write_photo(val / "n01" / "ILSVRC2012_val_00000001.png", 8, 8, seed=2)
    (val / "n01" / "readme.txt").write_text("ignored")
    out = tmp_path / "imagenet_label.json"
    assert imagenet_labels.main([str(val), "-o", str(out)]) == 0
    assert f"wrote 3 labels in 2 classes to {out}" in capsys.readouterr().out
    assert json.loads(out.read_text()) == {
        "ILSVRC2012_val_00000001": 0, "ILSVRC2012_val_00000002": 0, "ILSVRC2012_val_00000003": 1}


def test_label_file_refuses_duplicate_names_and_missing_folders(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_photo(tmp_path / "val" / "a" / "same.JPEG", 8, 8, seed=0)
    write_photo(tmp_path / "val" / "b" / "same.png", 8, 8, seed=1)
    assert imagenet_labels.main([str(tmp_path / "val"), "-o", str(tmp_path / "l.json")]) == 1
    assert "two images are named 'same'" in capsys.readouterr().err
    assert imagenet_labels.main([str(tmp_path / "nope"), "-o", str(tmp_path / "l.json")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "l.json").exists()
