"""A second serving signature for image models: encoded PNG/JPEG bytes in, decoded and resized inside the SavedModel.

TF Serving's REST API carries binary inputs as base64 (`{"image_bytes": {"b64": "..."}}`, an input name ending in
`_bytes`), so a client can send image files as they are. The signature `serving_bytes` takes a string tensor
`image_bytes` `(batch,)`, decodes each image (PNG, JPEG, BMP or GIF) to the model's number of channels, resizes it
bilinearly to the model's height and width, scales pixel values by 1/255 (to [0, 1], as `kmtl.data.images` gives
images) and returns the same outputs as `serving_default`.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["BYTES_INPUT", "BYTES_SIGNATURE", "decode_images", "image_bytes_input"]

BYTES_SIGNATURE = "serving_bytes"
BYTES_INPUT = "image_bytes"


def image_bytes_input(model, specs: dict, image_bytes: bool | None) -> str | None:
    """The name of the image input the bytes signature feeds, or None for no bytes signature.

    Args:
        model: `kmtl.MultiTaskModel`.
        specs: `{input name: tf.TensorSpec}` of the serving signature.
        image_bytes: bool or None. True: add it (the model must have one image input); False: don't; None: add it
            when the model has one image input and a per-pixel task (a segmentation model).

    Raises:
        ValueError: for `image_bytes=True` on a model without one `(batch, height, width, 1 or 3)` float input.
    """
    if image_bytes is False:
        return None
    images = [name for name, spec in specs.items() if _is_image(spec)]
    if image_bytes is None:
        per_pixel = any(getattr(task, "per_pixel", False) and not task.auxiliary for task in model.tasks)
        return images[0] if per_pixel and len(specs) == 1 and len(images) == 1 else None
    if len(specs) != 1 or len(images) != 1:
        shapes = {name: tuple(spec.shape) for name, spec in specs.items()}
        raise ValueError(
            "Invalid value for `image_bytes`: a bytes signature needs a model with one float image input of static "
            f"shape (batch, height, width, 1 or 3). Received: image_bytes=True for inputs {shapes}"
        )
    return images[0]


def decode_images(encoded, spec: tf.TensorSpec):
    """Decodes a `(batch,)` string tensor of encoded images to float32 `(batch, height, width, channels)` in [0, 1]."""
    height, width, channels = (int(d) for d in spec.shape[1:])

    def one(data):
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear")
        return image / 255.0

    images = tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec((height, width, channels), tf.float32))
    return tf.cast(images, spec.dtype)


def add_bytes_endpoint(archive, serve, specs: dict, input_name: str) -> None:
    """Adds `serving_bytes` to a `keras.export.ExportArchive` whose `serve(inputs)` takes the named inputs."""

    def serve_bytes(encoded):
        return serve({input_name: decode_images(encoded, specs[input_name])})

    signature = [tf.TensorSpec((None,), tf.string, name=BYTES_INPUT)]
    archive.add_endpoint(BYTES_SIGNATURE, serve_bytes, input_signature=signature)


def _is_image(spec) -> bool:
    shape = tuple(spec.shape)
    return (
        len(shape) == 4
        and all(d is not None for d in shape[1:])
        and shape[-1] in (1, 3)
        and spec.dtype.is_floating
    )
