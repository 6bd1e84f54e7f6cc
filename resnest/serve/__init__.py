"""Online inference for ResNeSt: a KServe v2 (Open Inference Protocol) REST server.

Run it with ``python -m resnest.serve --model M.mindir``. Nothing heavy is imported here so that
``--help`` and bad-argument errors stay fast; MindSpore is imported only when the model loads.
"""
