"""ResNeSt in MindSpore 2.x: models, training, evaluation, export and serving."""

import os

# MindSpore 2.10's bundled oneDNN (3.10) chooses a reference-speed float32 convolution
# ("jit_uni_ncsp:conv+ref") on AVX-512 CPUs: one 3x3 conv of resnest50 took 2.9 s instead of
# 23 ms on its AVX2 GEMM path, making the whole network ~50x slower than PyTorch. Capping the
# instruction set at AVX2 restores the fast path. Set ONEDNN_MAX_CPU_ISA yourself to override.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
