"""U-Net: an image encoder-decoder whose feature maps feed per-pixel tasks and whose bottleneck feeds image tasks."""

from __future__ import annotations

from typing import Mapping, Sequence

import keras

from kmtl.builders._common import check_dropout, positive_ints
from kmtl.heads import task_head
from kmtl.model import MultiTaskModel
from kmtl.tasks import Task, validate_task_list


def unet(
    inputs,
    tasks: Sequence[Task],
    *,
    widths: Sequence[int] = (16, 32, 64),
    batch_norm: bool = True,
    batch_norm_momentum: float = 0.9,
    head_units: Sequence[int] | Mapping[str, Sequence[int]] = (),
    dropout: float = 0.0,
    autoencoder_tasks: Sequence[str] = (),
    name: str = "unet",
) -> MultiTaskModel:
    """Builds a U-Net multi-task model: per-pixel tasks read the decoder, image-level tasks the bottleneck.

    The encoder has one block per width (two 3x3 convolutions, each with batch normalisation and ReLU), with 2x2
    max pooling between blocks; the last block is the bottleneck. The decoder mirrors it: a 2x2 transposed
    convolution, the encoder's map of the same size concatenated (skip connection), a block. Every per-pixel task
    (`Task(per_pixel=True)`) has a head on the decoder's last map; every other task a head on the bottleneck,
    averaged over its pixels (`bottleneck_pool`). A per-pixel task named in `autoencoder_tasks` gets its own
    decoder without skip connections (named `<task>_decoder_...`), so it must pass through the bottleneck: e.g. an
    auxiliary reconstruction of the input that shapes the shared encoder. Without per-pixel tasks no decoder is
    built (an image classifier on the same encoder).

    Args:
        inputs: a Keras input `(batch, height, width, channels)`; height and width divisible by
            `2 ** (len(widths) - 1)`.
        tasks: list of `kmtl.Task`.
        widths: sequence of int. Filters of the encoder's blocks, the last being the bottleneck; the depth (number
            of poolings) is `len(widths) - 1`. The decoder uses the same widths in reverse.
        batch_norm: bool. Batch normalisation after each convolution of the blocks.
        batch_norm_momentum: float in (0, 1). Momentum of the moving statistics used at inference. 0.9, not Keras's
            0.99: a from-scratch U-Net on [0, 1] images has activation variances ~1e-3, and after a few hundred
            steps 0.99 still keeps `0.99 ** steps` of the initial variance 1 (0.28 after 128 steps), so inference
            normalised by the wrong scale and predicted empty masks and one class while training-mode outputs
            were right.
        head_units: hidden widths of every head (Dense for image tasks, 3x3 convolutions for per-pixel tasks), or a
            dict `{task_name: widths}`.
        dropout: float. Dropout on the pooled bottleneck and in the heads.
        autoencoder_tasks: names of per-pixel tasks decoded from the bottleneck alone.
        name: str. Model name.

    Returns:
        `MultiTaskModel` whose outputs are keyed by task name.

    Raises:
        ValueError: for inputs that are not one image tensor of a size the depth divides, bad widths or dropout, or
            `autoencoder_tasks` that are not per-pixel tasks.

    Example:

    >>> import keras, kmtl
    >>> image = keras.Input((16, 16, 1), name="image")
    >>> tasks = [kmtl.Task("lesion", "binary", per_pixel=True), kmtl.Task("malignant", "binary")]
    >>> model = kmtl.builders.unet(image, tasks, widths=(4, 8))
    >>> model.output["lesion"].shape, model.output["malignant"].shape
    ((None, 16, 16, 1), (None, 1))

    Reference:
        Ronneberger, Fischer & Brox (2015). U-Net: Convolutional Networks for Biomedical Image Segmentation. MICCAI.
    """
    tasks = validate_task_list(tasks)
    widths = positive_ints("widths", widths)
    check_dropout(dropout)
    if isinstance(batch_norm_momentum, bool) or not isinstance(batch_norm_momentum, (int, float)) or not (
        0.0 < batch_norm_momentum < 1.0
    ):
        raise ValueError(
            "Invalid value for `batch_norm_momentum`. Expected a float in (0, 1). "
            f"Received: batch_norm_momentum={batch_norm_momentum!r}"
        )
    batch_norm = float(batch_norm_momentum) if batch_norm else None
    image = _check_image_input(inputs, len(widths) - 1)
    names = [t.name for t in tasks]
    pixel_names = [t.name for t in tasks if t.per_pixel]
    bad = [n for n in autoencoder_tasks if n not in pixel_names]
    if bad:
        raise ValueError(
            f"Invalid value for `autoencoder_tasks`. Expected names of per-pixel tasks {pixel_names}. Received: {bad}"
        )
    if isinstance(head_units, Mapping):
        unknown = [k for k in head_units if k not in names]
        if unknown:
            raise ValueError(f"`head_units` names unknown task(s) {unknown}. Valid: {names}.")
        units_for = {n: tuple(head_units.get(n, ())) for n in names}
    else:
        units_for = {n: tuple(head_units) for n in names}

    # === Encoder ===
    x, skips = image, []
    for level, width in enumerate(widths):
        if level:
            x = keras.layers.MaxPooling2D(2, name=f"encoder_{level}_pool")(x)
        x = _block(x, width, f"encoder_{level}", batch_norm)
        skips.append(x)
    bottleneck = x

    # === Decoders ===
    outputs = {}
    if any(t.per_pixel and t.name not in autoencoder_tasks for t in tasks):
        shared_map = _decoder(bottleneck, skips, widths, "decoder", batch_norm)
    for task in tasks:
        if task.per_pixel:
            own = task.name in autoencoder_tasks
            maps = _decoder(bottleneck, None, widths, f"{task.name}_decoder", batch_norm) if own else shared_map
            outputs[task.name] = task_head(task, maps, units_for[task.name], dropout=dropout)

    # === Image-level heads ===
    vector_tasks = [t for t in tasks if not t.per_pixel]
    if vector_tasks:
        pooled = keras.layers.GlobalAveragePooling2D(name="bottleneck_pool")(bottleneck)
        if dropout:
            pooled = keras.layers.Dropout(dropout, name="bottleneck_dropout")(pooled)
        for task in vector_tasks:
            outputs[task.name] = task_head(task, pooled, units_for[task.name], dropout=dropout)
    return MultiTaskModel(inputs, {n: outputs[n] for n in names}, name=name, tasks=tasks)


def _block(x, width: int, prefix: str, batch_norm: float | None):
    # `batch_norm`: the momentum of each convolution's batch normalisation, or None for none.
    for part in ("a", "b"):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm, name=f"{prefix}_conv_{part}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=batch_norm, name=f"{prefix}_bn_{part}")(x)
        x = keras.layers.Activation("relu", name=f"{prefix}_relu_{part}")(x)
    return x


def _decoder(bottleneck, skips, widths, prefix: str, batch_norm: float | None):
    """Upsamples the bottleneck back to the input size; with `skips`, concatenates the encoder's maps (U-Net)."""
    x = bottleneck
    for level in range(len(widths) - 2, -1, -1):
        x = keras.layers.Conv2DTranspose(widths[level], 2, strides=2, name=f"{prefix}_{level}_up")(x)
        if skips is not None:
            x = keras.layers.Concatenate(name=f"{prefix}_{level}_skip")([x, skips[level]])
        x = _block(x, widths[level], f"{prefix}_{level}", batch_norm)
    return x


def _check_image_input(inputs, depth: int):
    tensors = keras.tree.flatten(inputs)
    if len(tensors) != 1 or not keras.backend.is_keras_tensor(tensors[0]) or len(tensors[0].shape) != 4:
        raise ValueError(
            "`unet` expects one Keras input of images (batch, height, width, channels). "
            f"Received: inputs={inputs!r:.200}"
        )
    image = tensors[0]
    step = 2**depth
    sizes = tuple(image.shape[1:3])
    if any(size is None or size % step for size in sizes):
        raise ValueError(
            f"`unet` with {depth} poolings needs a height and width divisible by {step}. Received: image shape "
            f"{tuple(image.shape)}"
        )
    return image
