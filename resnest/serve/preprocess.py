"""Image decoding and the evaluation transform.

The pixel transform is evaluation's own (``resnest.data.pipeline.eval_transforms`` minus its
Decode: resize the short side to ``crop / 0.875``, centre crop, ImageNet mean/std, CHW), run
eagerly, so served predictions equal offline evaluation. Decoding is Pillow's and defensive: the
pixel count is checked from the header before any pixel is decoded, so a decompression bomb costs
nothing, and truncated or non-image bytes become a 400.
"""

from __future__ import annotations

import dataclasses
import io
import threading
import warnings
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from resnest.serve.errors import InferenceError


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode JPEG/PNG/... bytes to RGB; raise a 400 ``InferenceError`` for anything else."""
    if not data:
        raise InferenceError(400, "empty image: the input holds no bytes")
    try:
        with warnings.catch_warnings():
            # Pillow warns (not raises) between MAX_IMAGE_PIXELS and twice that; we check ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise InferenceError(
                400, f"image too large: {width}x{height} pixels, at most {max_pixels} allowed"
            )
        image.load()
        return image.convert("RGB")
    except InferenceError:
        raise
    except Image.DecompressionBombError as exc:
        raise InferenceError(400, f"image too large: {exc}") from None
    except UnidentifiedImageError:
        raise InferenceError(400, "not an image: the bytes are not a format Pillow can decode") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InferenceError(400, f"corrupt or truncated image: {exc}") from None


_thread_ops = threading.local()  # eager MindSpore ops are built once per decode thread


def _eval_ops(crop_size: int) -> list[Any]:
    cache: dict[int, list[Any]] = _thread_ops.__dict__.setdefault("by_size", {})
    if crop_size not in cache:
        from resnest.config import TrainConfig
        from resnest.data.pipeline import eval_transforms

        transforms = eval_transforms(dataclasses.replace(TrainConfig(), crop_size=crop_size))
        cache[crop_size] = transforms[1:]  # [0] is Decode: Pillow has decoded already
    return cache[crop_size]


def eval_transform(image: Image.Image, crop_size: int) -> np.ndarray:
    """RGB image -> float32 [3, S, S], exactly as evaluation prepares it."""
    pixels: Any = np.asarray(image, dtype=np.uint8)
    for op in _eval_ops(crop_size):
        pixels = op(pixels)
    return np.ascontiguousarray(pixels, dtype=np.float32)


def image_to_tensor(data: bytes, crop_size: int, max_pixels: int) -> np.ndarray:
    """Encoded image bytes -> the model's float32 [3, S, S] input."""
    return eval_transform(decode_image(data, max_pixels), crop_size)
