"""Build the served model for the tests and the benchmark, in its own process.

``python -m tests.serve.build_tiny_model OUT [--steps N] [--image-size S] [--batches 1,4]``
trains a tiny resnest14d for a few steps on random data (so BatchNorm statistics and weights are
not at their initial values), saves ``model.ckpt``, exports ``model_b{B}.mindir`` per batch size
and ``model.onnx`` (``resnest.export``'s dynamic-batch ONNX), writes a few JPEGs, and stores the
checkpoint network's outputs in ``reference.npz`` for comparison with what the engines return.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

NUM_CLASSES = 5
ARCH = "resnest14d"
FULL_BATCH = 8  # the ONNX server's --max-batch-size in the tests: a "full dynamic batch"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batches", default="1,4")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import mindspore as ms
    from mindspore import nn
    from PIL import Image

    from resnest.export import export_network
    from resnest.models import create_model
    from resnest.serve.preprocess import image_to_tensor

    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    rng = np.random.default_rng(0)
    size = args.image_size
    net = create_model(ARCH, num_classes=NUM_CLASSES, final_drop=0.0, last_gamma=False)
    train = nn.TrainOneStepCell(
        nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")),
        nn.Momentum(net.trainable_params(), learning_rate=0.05, momentum=0.9))
    train.set_train(True)
    for _ in range(args.steps):
        images = ms.Tensor(rng.normal(size=(8, 3, size, size)).astype(np.float32))
        labels = ms.Tensor(rng.integers(0, NUM_CLASSES, size=8).astype(np.int32))
        train(images, labels)
    net.set_train(False)
    ms.save_checkpoint(net, str(args.out / "model.ckpt"))
    for batch in (int(b) for b in args.batches.split(",")):
        dummy = ms.Tensor(np.zeros((batch, 3, size, size), np.float32))
        ms.export(net, dummy, file_name=str(args.out / f"model_b{batch}"), file_format="MINDIR")
    export_network(net, "ONNX", FULL_BATCH, size, args.out / "model.onnx")

    fp32 = rng.normal(size=(3, 3, size, size)).astype(np.float32)
    jpegs = []
    for i, (w, h) in enumerate([(50, 40), (37, 64), (128, 96)]):
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        path = args.out / f"image{i}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        jpegs.append(image_to_tensor(path.read_bytes(), size, 10**8))
    image_batch = np.stack(jpegs)
    full = rng.normal(size=(FULL_BATCH, 3, size, size)).astype(np.float32)
    np.savez(args.out / "reference.npz",
             fp32_inputs=fp32, fp32_logits=net(ms.Tensor(fp32)).asnumpy(),
             full_inputs=full, full_logits=net(ms.Tensor(full)).asnumpy(),
             image_inputs=image_batch, image_logits=net(ms.Tensor(image_batch)).asnumpy())
    (args.out / "labels.txt").write_text("".join(f"class-{i}\n" for i in range(NUM_CLASSES)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
