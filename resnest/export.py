"""Export a checkpoint to ONNX (dynamic batch), MINDIR or AIR, checked against the checkpoint.

    python -m resnest.export --checkpoint C --format ONNX|MINDIR|AIR [--batch-size B] --image-size S --out P

ONNX: MindSpore's exporter writes static shapes only (``mindspore.export`` raises "Export ONNX
format model not support dynamic shape mode" for a ``None`` dimension: mindspore/train/
serialization.py in MindSpore 2.10; ``mindspore.onnx.export(dynamic_axes=...)`` renames the
input dimension but keeps the traced batch inside the graph). So the network is traced at batch
``TRACE_BATCH`` and the ONNX graph is rewritten with the ``onnx`` package: every Reshape that
keeps the batch as its leading dimension gets 0 there ("copy this dimension from the input", ONNX Reshape semantics),
the graph's input and output get a named batch dimension, and each BatchNormalization that
follows a Conv is folded into that Conv's weights and bias. ONNX Runtime then runs any batch
size. MINDIR and AIR keep the static ``--batch-size``.

Before reporting success the export runs the written model (ONNX Runtime for ONNX, MindSpore
for MINDIR) on random inputs, at batch 1 and ``max(--batch-size, 4)`` for ONNX, at the static
batch for MINDIR, and compares its logits with
the checkpoint's network in MindSpore: relative error (max |a - b| / max |b|) must stay within
``CHECK_RTOL``. Otherwise nothing is left at ``--out`` and the command exits 1. AIR (for the
Ascend 310 toolchain) can only be written by MindSpore running on an Ascend device; elsewhere
this says so and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file (msrun launches files, not modules)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from resnest._as_script import use_repo_root

    use_repo_root(__file__)

from resnest.config import ConfigError, add_config_arguments, config_from_args, integer_argument

FORMATS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}
TRACE_BATCH = 3  # the batch the ONNX graph is traced at before its batch dimension is freed
BATCH_DIM = "batch"
INPUT_NAME, OUTPUT_NAME = "input", "logits"  # the names the server's v2 protocol uses
CHECK_RTOL = 1e-5


class ExportCheckError(RuntimeError):
    """The written model does not reproduce the checkpoint's logits."""


def fold_batch_norms(model: Any) -> int:
    """Fold every inference BatchNormalization that alone consumes a Conv's output into that
    Conv (W * s, (b - mean) * s + beta with s = gamma / sqrt(var + eps)), in float64.
    Returns how many were folded."""
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for out in graph.output:
        uses[out.name] = uses.get(out.name, 0) + 1
    folded, dropped = 0, []
    for bn in list(graph.node):
        if bn.op_type != "BatchNormalization" or any(bn.output[1:]):
            continue
        conv = producer.get(bn.input[0])
        params = [*bn.input[1:5], *conv.input[1:]] if conv is not None else []
        if (conv is None or conv.op_type != "Conv" or uses.get(bn.input[0]) != 1
                or not all(name in inits for name in params)):
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64)
                                  for n in bn.input[1:5])
        weight = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        bias = (numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64)
                if len(conv.input) > 2 and conv.input[2] else np.zeros(weight.shape[0]))
        scale = gamma / np.sqrt(var + eps)
        tag = bn.output[0]
        new_w = numpy_helper.from_array(
            (weight * scale.reshape(-1, *[1] * (weight.ndim - 1))).astype(np.float32),
            f"{tag}.folded_weight")
        new_b = numpy_helper.from_array(((bias - mean) * scale + beta).astype(np.float32),
                                        f"{tag}.folded_bias")
        graph.initializer.extend([new_w, new_b])
        del conv.input[1:]
        conv.input.extend([new_w.name, new_b.name])
        conv.output[0] = bn.output[0]
        dropped.append(bn)
        folded += 1
    for bn in dropped:
        graph.node.remove(bn)
    used = {name for node in graph.node for name in node.input}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return folded


def make_batch_dynamic(model: Any, trace_batch: int) -> int:
    """Free the batch dimension of a graph traced at ``trace_batch``; returns Reshapes rewritten.

    A Reshape whose input and target both lead with the traced batch gets 0 there, which ONNX
    defines as "copy from the input" (allowzero unset), so it follows whatever batch comes in.
    Other hard-coded batch uses would make the self-check at another batch size fail.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    leading: dict[str, int] = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            leading[info.name] = dims[0].dim_value
    graph = model.graph
    constants = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}
    inits = {init.name: init for init in graph.initializer}
    rewritten = 0
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        shape_name = node.input[1]
        if shape_name in constants:
            value = numpy_helper.to_array(constants[shape_name].attribute[0].t)
        elif shape_name in inits:
            value = numpy_helper.to_array(inits[shape_name])
        else:
            continue
        if value.size and value[0] == trace_batch and leading.get(node.input[0]) == trace_batch:
            target = value.astype(np.int64).copy()
            target[0] = 0
            fresh = numpy_helper.from_array(target, f"{node.output[0]}.dynamic_shape")
            graph.initializer.append(fresh)
            node.input[1] = fresh.name
            rewritten += 1
    used = {name for node in graph.node for name in node.input}
    live = [node for node in graph.node
            if not (node.op_type == "Constant" and node.output[0] not in used)]
    del graph.node[:]
    graph.node.extend(live)
    for value_info in [*graph.input, *graph.output]:
        dims = value_info.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
    del graph.value_info[:]  # shapes inferred at the traced batch are stale now
    return rewritten


def relative_error(got: Any, want: Any) -> float:
    """max |got - want| / max |want|: one number for a batch of logits."""
    import numpy as np

    scale = float(np.max(np.abs(want))) or 1.0
    return float(np.max(np.abs(np.asarray(got, np.float64) - want))) / scale


def check_against_network(run: Any, net: Any, batch_sizes: list[int], image_size: int) -> float:
    """Largest relative error of ``run(x)`` against ``net`` over random batches; raises above
    ``CHECK_RTOL``."""
    import mindspore as ms
    import numpy as np

    rng = np.random.default_rng(0)
    worst = 0.0
    for batch in batch_sizes:
        images = rng.normal(size=(batch, 3, image_size, image_size)).astype(np.float32)
        want = net(ms.Tensor(images)).asnumpy().astype(np.float64)
        got = run(images)
        if got.shape != want.shape:
            raise ExportCheckError(f"batch {batch}: the exported model returned shape "
                                   f"{list(got.shape)}, the checkpoint {list(want.shape)}")
        error = relative_error(got, want)
        if not error <= CHECK_RTOL:
            raise ExportCheckError(f"batch {batch}: exported logits differ from the checkpoint's "
                                   f"by {error:.2e} relative (allowed {CHECK_RTOL:g})")
        worst = max(worst, error)
    return worst


def write_onnx(net: Any, image_size: int, base: Path) -> Path:
    """Trace, rewrite (dynamic batch, BN folded) and write ``base``.onnx; returns its path."""
    import mindspore as ms
    import numpy as np
    import onnx

    traced = base.with_name(base.name + ".traced.onnx")
    example = ms.Tensor(np.zeros((TRACE_BATCH, 3, image_size, image_size), np.float32))
    # mindspore.onnx.export is 2.10's ONNX entry point (mindspore.export(file_format="ONNX") is
    # deprecated). Its dynamic_axes is not used: it names the input's batch dimension but
    # leaves every Reshape target at the traced batch, so ONNX Runtime fails at any other batch
    # ("requested shape:{3,1,2,-1}", tried with resnest14d); make_batch_dynamic does it right.
    ms.onnx.export(net, example, file_name=str(traced), input_names=[INPUT_NAME],
                   output_names=[OUTPUT_NAME])
    try:
        model = onnx.load(str(traced))
    finally:
        traced.unlink(missing_ok=True)
    fold_batch_norms(model)
    make_batch_dynamic(model, TRACE_BATCH)
    onnx.checker.check_model(model, full_check=True)
    path = base.with_name(base.name + ".onnx")
    onnx.save(model, str(path))
    return path


def export_network(net: Any, fmt: str, batch_size: int, image_size: int, out: Path) -> Path:
    """Write `net` for input [B, 3, image_size, image_size] (B dynamic for ONNX, else
    `batch_size`), check it against `net`, and return the file written.

    The file is written under a temporary name and renamed only after the check passes, so a
    failed export leaves nothing at `out`.
    """
    import mindspore as ms
    import numpy as np

    suffix = FORMATS[fmt]
    base = out.with_suffix("") if out.suffix.lower() == suffix else out
    base.parent.mkdir(parents=True, exist_ok=True)
    final = base.with_name(base.name + suffix)
    staging = base.with_name(f".{base.name}.partial")
    net.set_train(False)
    try:
        if fmt == "ONNX":
            written = write_onnx(net, image_size, staging)
            from resnest.serve.engine import OnnxRuntimeModel

            session = OnnxRuntimeModel(written)
            check_against_network(session, net, sorted({1, max(batch_size, 4)}), image_size)
        else:
            example = ms.Tensor(np.zeros((batch_size, 3, image_size, image_size), np.float32))
            ms.export(net, example, file_name=str(staging), file_format=fmt)
            written = staging.with_name(staging.name + suffix)
            if fmt == "MINDIR":
                from mindspore import nn

                graph = nn.GraphCell(ms.load(str(written)))
                check_against_network(lambda x: graph(ms.Tensor(x)).asnumpy(), net,
                                      [batch_size], image_size)
        written.replace(final)
    finally:
        for leftover in base.parent.glob(f".{base.name}.partial*"):
            leftover.unlink(missing_ok=True)
    return final


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resnest.export", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help=".ckpt file or run folder")
    parser.add_argument("--format", required=True, type=str.upper, help="MINDIR, ONNX or AIR")
    parser.add_argument("--batch-size", type=integer_argument, default=1,
                        help="MINDIR/AIR: the static batch size; ONNX (dynamic batch): the "
                             "largest batch the self-check runs (at least 4)")
    parser.add_argument("--image-size", type=integer_argument, default=224)
    parser.add_argument("--out", required=True, type=Path, help="output file (suffix added if absent)")
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.format not in FORMATS:
            raise ConfigError(f"--format {args.format!r}: allowed values are {', '.join(FORMATS)}")
        if args.batch_size < 1:
            raise ConfigError(f"--batch-size {args.batch_size}: must be >= 1")
        if args.image_size < 32:
            raise ConfigError(f"--image-size {args.image_size}: must be >= 32")
        config = config_from_args(args)
        from resnest.checkpoint import resolve_checkpoint_path

        checkpoint = resolve_checkpoint_path(args.checkpoint)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from resnest.distributed import resolve_device_target
    from resnest.network import create_network, load_network_weights

    device_target = resolve_device_target(config.device_target)
    if args.format == "AIR" and device_target != "Ascend":
        print(f"error: --format AIR needs an Ascend device (MindSpore writes AIR only through the "
              f"Ascend backend); this machine has {device_target}. Export MINDIR or ONNX here, or "
              "run this command on an Ascend host.", file=sys.stderr)
        return 2
    import mindspore as ms

    from resnest.distributed import select_device

    select_device(device_target)
    ms.set_context(mode=ms.GRAPH_MODE)
    net = create_network(config)
    try:
        load_network_weights(net, checkpoint)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        written = export_network(net, args.format, args.batch_size, args.image_size, args.out)
    except ExportCheckError as exc:
        print(f"error: export check failed, nothing written: {exc}", file=sys.stderr)
        return 1
    batch = BATCH_DIM if args.format == "ONNX" else str(args.batch_size)
    checked = "" if args.format == "AIR" else f", checked against the checkpoint within {CHECK_RTOL:g}"
    print(f"exported {checkpoint} as {args.format} [{batch},3,{args.image_size},"
          f"{args.image_size}] to {written}{checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
