"""The model behind the server: an ONNX file (ONNX Runtime), a MINDIR graph or a checkpoint
plus its architecture (MindSpore).

On MindSpore every distinct input shape costs a graph compile, so batches are zero-padded up to
a fixed set of batch sizes ("buckets": powers of two up to the max batch size, and the max
itself) and each bucket is compiled during warm-up, before the server reports ready. ONNX
Runtime runs an ONNX model with a dynamic batch dimension at any batch size without a compile,
so there the batch goes in as it is, never padded. Spatial size is fixed (``image_size``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnest.serve.engine import MINDSPORE, ONNXRUNTIME, load_onnx_model

log = logging.getLogger("resnest.serve")

DEVICE_TARGETS = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}


def batch_buckets(max_batch_size: int) -> list[int]:
    """Powers of two below ``max_batch_size``, then ``max_batch_size`` itself."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return [*sizes, max_batch_size]


def mindir_input_shape(path: Path) -> list[int]:
    """The [B, 3, H, W] the MINDIR was exported with (B is -1 when exported dynamic)."""
    from mindspore.train import mind_ir_pb2

    proto = mind_ir_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    for graph_input in proto.graph.input:
        for tensor in graph_input.tensor:
            if len(tensor.dims) == 4:
                return [int(d) for d in tensor.dims]
    raise ValueError(f"{path}: no [B, 3, H, W] input found in the MINDIR graph")


@dataclass(frozen=True)
class ModelSpec:
    """Where the model is and how to build it (architecture only needed for checkpoints).

    Several MINDIR files exported at different static batch sizes can be given: each one serves
    its own batch size, so dynamic batching works with static-shape graphs.
    """

    paths: tuple[Path, ...]
    device: str = "cpu"
    device_id: int = 0
    arch: str | None = None
    num_classes: int | None = None
    image_size: int | None = None
    engine: str = MINDSPORE  # resolved already (resnest.serve.engine.resolve_engine)
    threads: int = 0  # compute threads; 0: the CPUs this process may use (ONNX Runtime)

    @property
    def is_mindir(self) -> bool:
        return self.paths[0].suffix == ".mindir"


class ModelRunner:
    """Loads the model once and runs float32 [B, 3, S, S] -> logits [B, K]; thread-safe."""

    def __init__(self, spec: ModelSpec, max_batch_size: int) -> None:
        self.spec = spec
        self.max_batch_size = max_batch_size
        self.buckets = batch_buckets(max_batch_size)
        self.num_classes: int | None = spec.num_classes
        self.image_size: int | None = None
        self._nets: dict[int, Any] = {}  # bucket -> numpy callable; key 0 = any batch size
        self._lock = threading.Lock()  # one graph execution at a time, from any thread

    @property
    def platform(self) -> str:
        if self.spec.engine == ONNXRUNTIME:
            return "onnxruntime_onnx"  # Triton's name for the same backend and format
        return "mindspore_mindir" if self.spec.is_mindir else "mindspore_checkpoint"

    def load(self) -> None:
        """Load the model on its engine (slow: call off the event loop)."""
        if self.spec.engine == ONNXRUNTIME:
            self._load_onnx()
        else:
            self._load_mindspore()
        log.info("loaded %s (%s) on %s, batch sizes %s, input %dx%d",
                 ", ".join(map(str, self.spec.paths)), self.platform, self.spec.device,
                 self.buckets, self.image_size, self.image_size)

    def _load_onnx(self) -> None:
        (path,) = self.spec.paths
        model = load_onnx_model(path, self.spec.threads)
        if self.spec.image_size and self.spec.image_size != model.image_size:
            raise ValueError(f"{path}: exported for {model.image_size}x{model.image_size} input, "
                             f"but the image size is {self.spec.image_size}")
        self.image_size = model.image_size
        self.num_classes = model.num_classes or self.num_classes
        if model.fixed_batch is None:
            # Dynamic batch: every size up to the max runs as it is (no padding).
            self.buckets = list(range(1, self.max_batch_size + 1))
            self._nets = {0: model}
        else:
            self.buckets = [model.fixed_batch]
            self.max_batch_size = min(self.max_batch_size, model.fixed_batch)
            self._nets = {model.fixed_batch: model}

    def _load_mindspore(self) -> None:
        """Import MindSpore, select the device, load the weights."""
        import mindspore as ms

        from resnest.distributed import select_device

        select_device(DEVICE_TARGETS[self.spec.device], self.spec.device_id)
        ms.set_context(mode=ms.GRAPH_MODE)
        if self.spec.threads and self.spec.device == "cpu":
            ms.device_context.cpu.op_tuning.threads_num(self.spec.threads)
        tensor = ms.Tensor
        if self.spec.is_mindir:
            self._load_mindirs(ms)
        else:
            self.image_size = self.spec.image_size or 224
            self._nets = {0: self._load_checkpoint(ms)}
        # MindSpore cells take and return Tensors; the runner speaks numpy.
        self._nets = {key: _numpy_call(net, tensor) for key, net in self._nets.items()}

    def _load_mindirs(self, ms: Any) -> None:
        from mindspore import nn

        for path in self.spec.paths:
            batch, channels, height, width = mindir_input_shape(path)
            if channels != 3 or height != width:
                raise ValueError(f"{path}: input must be [B, 3, S, S], exported as "
                                 f"{[batch, channels, height, width]}")
            wanted = self.spec.image_size or self.image_size or height
            if height != wanted:
                raise ValueError(f"{path}: exported for {height}x{width} input, but the image "
                                 f"size is {wanted}")
            self.image_size = height
            key = max(0, batch)
            if key in self._nets:
                raise ValueError(f"{path}: two MINDIR files for batch size {batch}")
            self._nets[key] = nn.GraphCell(ms.load(str(path)))
        if 0 not in self._nets:
            # Static graphs: each serves exactly its batch size; smaller batches are padded.
            self.buckets = sorted(self._nets)
            self.max_batch_size = min(self.max_batch_size, self.buckets[-1])
    def _load_checkpoint(self, ms: Any) -> Any:
        from resnest.models import create_model

        if not self.spec.arch or not self.spec.num_classes:
            raise ValueError("a .ckpt model needs its architecture: --arch and --num-classes")
        path = self.spec.paths[0]
        net = create_model(self.spec.arch, num_classes=self.spec.num_classes, final_drop=0.0,
                           last_gamma=False)
        params = ms.load_checkpoint(str(path))
        wanted = {p.name for p in net.get_parameters()}
        # Checkpoints saved from a training wrapper prefix names ("network.", "_backbone.").
        renamed = {}
        for name, value in params.items():
            if name in wanted:
                renamed[name] = value
                continue
            for prefix in ("network.", "_backbone.", "network._backbone."):
                if name.startswith(prefix) and name[len(prefix):] in wanted:
                    renamed[name[len(prefix):]] = value
        missing, _ = ms.load_param_into_net(net, renamed, strict_load=False)
        if missing:
            raise ValueError(f"checkpoint {path} lacks {len(missing)} parameters of "
                             f"{self.spec.arch}, e.g. {missing[0]}")
        net.set_train(False)
        return net

    def warmup(self) -> None:
        """Run every bucket once, so no request pays for a graph compile (MindSpore); on ONNX
        Runtime batch 1 and the max, which sizes its memory arena for the largest batch."""
        size = self.image_size
        assert size is not None, "load() first"
        sizes = self.buckets
        if self.spec.engine == ONNXRUNTIME and 0 in self._nets:
            sizes = sorted({1, self.max_batch_size})
        for bucket in sizes:
            logits = self.predict(np.zeros((bucket, 3, size, size), np.float32))
            self.num_classes = int(logits.shape[1])
        log.info("warmed up batch sizes %s at %dx%d", sizes, size, size)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Logits for ``inputs`` [B, 3, S, S]; pads B up to a bucket, chunks above the max."""
        if not self._nets:
            raise RuntimeError("model is not loaded")
        top = self.buckets[-1]
        if len(inputs) > top:
            return np.concatenate([self.predict(inputs[i:i + top])
                                   for i in range(0, len(inputs), top)])
        n = len(inputs)
        bucket = next(b for b in self.buckets if b >= n)
        if bucket != n:
            padded = np.zeros((bucket, *inputs.shape[1:]), np.float32)
            padded[:n] = inputs
            inputs = padded
        with self._lock:
            net = self._nets.get(bucket) or self._nets[0]
            logits = net(np.ascontiguousarray(inputs, dtype=np.float32))
        return logits[:n]


def _numpy_call(net: Any, tensor: Any) -> Any:
    """Wrap a MindSpore cell as numpy [B, 3, S, S] -> numpy logits."""
    def call(inputs: np.ndarray) -> np.ndarray:
        return net(tensor(inputs)).asnumpy()
    return call
