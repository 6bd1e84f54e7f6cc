"""Image decoding and the evaluation transform, in numpy/Pillow.

The transform matches evaluation (resize the short side to ``crop / 0.875``, centre crop,
ImageNet mean/std, CHW float32) so that served predictions equal offline evaluation. Decoding is
defensive: the pixel count is checked from the header before any pixel is decoded, so a
decompression bomb costs nothing, and truncated or non-image bytes become a 400.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from resnest.serve.errors import InferenceError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
CROP_RATIO = 0.875


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


def eval_transform(image: Image.Image, crop_size: int) -> np.ndarray:
    """Resize short side to ``crop_size / 0.875``, centre-crop, normalise: float32 [3, S, S]."""
    resize_to = int(crop_size / CROP_RATIO)
    width, height = image.size
    if width <= height:
        new_w, new_h = resize_to, max(1, round(height * resize_to / width))
    else:
        new_w, new_h = max(1, round(width * resize_to / height)), resize_to
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left = (new_w - crop_size) // 2
    top = (new_h - crop_size) // 2
    image = image.crop((left, top, left + crop_size, top + crop_size))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = (pixels - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def image_to_tensor(data: bytes, crop_size: int, max_pixels: int) -> np.ndarray:
    """Encoded image bytes -> the model's float32 [3, S, S] input."""
    return eval_transform(decode_image(data, max_pixels), crop_size)
