"""The aiohttp application: KServe v2 REST endpoints, a classify convenience endpoint, metrics.

The model loads in the background after the socket is bound, so ``/v2/health/live`` answers at
once and ``/v2/health/ready`` turns true only after loading and warm-up. On SIGTERM aiohttp stops
accepting connections and waits for in-flight handlers; the batcher keeps running until they are
done (it stops in ``on_cleanup``), which is what drains in-flight requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from resnest.serve.batcher import DynamicBatcher, QueueFullError
from resnest.serve.config import ServeConfig
from resnest.serve.errors import InferenceError
from resnest.serve.metrics import ServerMetrics
from resnest.serve.model import ModelRunner
from resnest.serve.preprocess import image_to_tensor
from resnest.serve.protocol import INPUT_NAME, OUTPUT_NAME, infer_response, parse_infer_request

log = logging.getLogger("resnest.serve")

CONFIG = web.AppKey("config", ServeConfig)
RUNNER = web.AppKey("runner", ModelRunner)
METRICS = web.AppKey("metrics", ServerMetrics)
STATE = web.AppKey("state", dict)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes ``{"error": ...}``; every response is counted and timed."""
    started = time.perf_counter()
    resource = request.match_info.route.resource
    endpoint = resource.canonical if resource is not None else "unmatched"
    try:
        response = await handler(request)
    except InferenceError as exc:
        response = _error(exc.status, str(exc))
    except QueueFullError as exc:
        response = _error(503, str(exc))
    except web.HTTPException as exc:
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 413:
            message = f"request body too large: the limit is {request.app[CONFIG].max_body_bytes} bytes"
        response = _error(exc.status, message)
        for name in ("Allow",):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = _error(500, "internal server error")
    metrics = request.app[METRICS]
    metrics.requests.labels(endpoint, str(response.status)).inc()
    metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
    return response


def _require_model(request: web.Request) -> None:
    name = request.match_info.get("model")
    if name is not None and name != request.app[CONFIG].model_name:
        raise InferenceError(404, f"unknown model {name!r}; this server serves "
                                  f"{request.app[CONFIG].model_name!r}")


def _batcher(request: web.Request) -> DynamicBatcher:
    batcher = request.app[STATE].get("batcher")
    if batcher is None:
        raise InferenceError(503, "model is not ready yet (loading or warming up)")
    return batcher


async def _images_to_batch(app: web.Application, images: list[bytes]) -> np.ndarray:
    """Decode in a thread pool: Pillow releases the GIL, and the loop stays free meanwhile."""
    config = app[CONFIG]
    loop = asyncio.get_running_loop()
    pool = app[STATE]["decode_pool"]
    tensors = await asyncio.gather(*[
        loop.run_in_executor(pool, image_to_tensor, data, app[RUNNER].image_size,
                             config.max_image_pixels)
        for data in images
    ])
    return np.stack(tensors)


async def live(request: web.Request) -> web.Response:
    return web.json_response({"live": True})


async def ready(request: web.Request) -> web.Response:
    _require_model(request)
    is_ready = request.app[STATE].get("batcher") is not None
    return web.json_response({"ready": is_ready}, status=200 if is_ready else 503)


async def server_metadata(request: web.Request) -> web.Response:
    return web.json_response({"name": "resnest-serve", "version": "0.1.0",
                              "extensions": ["binary_tensor_data"]})


async def model_metadata(request: web.Request) -> web.Response:
    _require_model(request)
    config, runner = request.app[CONFIG], request.app[RUNNER]
    size = runner.image_size or -1
    return web.json_response({
        "name": config.model_name,
        "versions": ["1"],
        "platform": runner.platform,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, 3, size, size]},
                   {"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32",
                     "shape": [-1, runner.num_classes if runner.num_classes else -1]}],
        "parameters": {"max_batch_size": runner.max_batch_size,
                       "max_queue_delay_ms": config.max_queue_delay_ms,
                       "image_size": size, "labels": len(config.labels)},
    })


async def infer(request: web.Request) -> web.Response:
    _require_model(request)
    batcher = _batcher(request)
    config = request.app[CONFIG]
    body = await request.read()
    parsed = parse_infer_request(body, request.headers.get("Inference-Header-Content-Length"),
                                 request.app[RUNNER].image_size, config.max_request_batch)
    if parsed.images is not None:
        inputs = await _images_to_batch(request.app, parsed.images)
    else:
        assert parsed.fp32 is not None
        inputs = parsed.fp32
    logits = await batcher.submit(inputs)
    return web.json_response(infer_response(config.model_name, logits, parsed.request_id))


async def _upload_bytes(request: web.Request) -> bytes:
    """The image of a classify request: a multipart field ``image``/``file`` or the raw body."""
    if request.content_type == "multipart/form-data":
        form = await request.post()  # enforces client_max_size (413)
        for key in ("image", "file"):
            field = form.get(key)
            if field is not None and hasattr(field, "file"):
                return field.file.read()
        raise InferenceError(400, "multipart upload needs a file field named 'image' or 'file'")
    return await request.read()


async def classify(request: web.Request) -> web.Response:
    """Top-k classes with softmax probabilities for one uploaded image."""
    _require_model(request)
    batcher = _batcher(request)
    config = request.app[CONFIG]
    raw_k = request.query.get("top_k", "5")
    if not raw_k.isdigit() or not 1 <= int(raw_k) <= 1000:
        raise InferenceError(400, f"top_k must be an integer in [1, 1000], got {raw_k!r}")
    data = await _upload_bytes(request)
    inputs = await _images_to_batch(request.app, [data])
    logits = (await batcher.submit(inputs))[0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)[: int(raw_k)]
    labels = config.labels
    return web.json_response({
        "model_name": config.model_name,
        "predictions": [
            {"class_index": int(i), "label": labels[i] if i < len(labels) else str(int(i)),
             "probability": float(probs[i])}
            for i in order
        ],
    })


async def metrics_endpoint(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    batcher = request.app[STATE].get("batcher")
    metrics.queue_depth.set(batcher.depth if batcher else 0)
    return web.Response(body=generate_latest(metrics.registry),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _load_model(app: web.Application) -> None:
    """Load and warm up off the event loop, then start batching and report ready."""
    config, runner, state = app[CONFIG], app[RUNNER], app[STATE]
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(state["infer_pool"], runner.load)
        await loop.run_in_executor(state["infer_pool"], runner.warmup)
    except Exception as exc:  # noqa: BLE001 - any load failure ends the process
        log.error("model failed to load: %s", exc)
        state["exit_code"] = 1
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if config.labels and runner.num_classes and len(config.labels) != runner.num_classes:
        log.warning("label file has %d names but the model has %d classes",
                    len(config.labels), runner.num_classes)
    metrics = app[METRICS]
    batcher = DynamicBatcher(
        runner.predict, state["infer_pool"], runner.max_batch_size,
        config.max_queue_delay_ms / 1000.0, config.max_queue_size, metrics.observe_batch)
    batcher.start()
    state["batcher"] = batcher
    metrics.ready.set(1)
    log.info("ready: model %r on port %d", config.model_name, config.port)


async def _on_startup(app: web.Application) -> None:
    state = app[STATE]
    state["infer_pool"] = ThreadPoolExecutor(1, thread_name_prefix="infer")
    state["decode_pool"] = ThreadPoolExecutor(app[CONFIG].decode_threads,
                                              thread_name_prefix="decode")
    state["load_task"] = asyncio.get_running_loop().create_task(_load_model(app))


async def _on_shutdown(app: web.Application) -> None:
    log.info("shutting down: draining in-flight requests")


async def _on_cleanup(app: web.Application) -> None:
    state = app[STATE]
    load_task = state.get("load_task")
    if load_task is not None and not load_task.done():
        load_task.cancel()
    batcher = state.pop("batcher", None)
    if batcher is not None:
        await batcher.stop()
    app[METRICS].ready.set(0)
    state["infer_pool"].shutdown(wait=False, cancel_futures=True)
    state["decode_pool"].shutdown(wait=False, cancel_futures=True)
    log.info("stopped")


def create_app(config: ServeConfig, runner: ModelRunner | None = None) -> web.Application:
    """Build the app; ``runner`` defaults to a ``ModelRunner`` for ``config.model``."""
    app = web.Application(client_max_size=config.max_body_bytes,
                          middlewares=[_errors_and_metrics])
    app[CONFIG] = config
    app[RUNNER] = runner or ModelRunner(config.model, config.max_batch_size)
    app[METRICS] = ServerMetrics(config.max_batch_size)
    state: dict[str, Any] = {"exit_code": 0}
    app[STATE] = state
    app.router.add_get("/v2", server_metadata)
    app.router.add_get("/v2/health/live", live)
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_get("/v2/models/{model}", model_metadata)
    app.router.add_get("/v2/models/{model}/ready", ready)
    app.router.add_post("/v2/models/{model}/infer", infer)
    app.router.add_post("/v2/models/{model}/classify", classify)
    app.router.add_get("/metrics", metrics_endpoint)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app


def serve(config: ServeConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    app = create_app(config)
    web.run_app(app, host=config.host, port=config.port,
                shutdown_timeout=config.shutdown_timeout_s,
                access_log=logging.getLogger("aiohttp.access") if config.access_log else None,
                print=None, handle_signals=True)
    return int(app[STATE]["exit_code"])
