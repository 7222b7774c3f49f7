"""Per-step cost of a CRF head against a softmax head at 50 tags, on the same BiLSTM tagger, side by side.

Model: token ids -> Embedding(5000, 100, mask_zero) -> BiLSTM(100 units each way) -> the head of one per-token task
with 50 tags: softmax (a Dense layer, `sparse_categorical_crossentropy` per token) or CRF (a Dense layer for tag
scores, `kmtl.layers.CRF` and `kmtl.losses.CRFLoss`: forward-backward marginals in the layer, one forward pass over
the batch and its label-constrained copy in the loss). Both are `MultiTaskModel`s compiled with Adam and
`weighting="equal"`, trained by `fit` on random sentences of `--steps-per-sentence` tokens (10% padding, 10% missing
labels), batch `--batch`.

Method: after a warm-up `fit` (tracing), `fit` calls of `--steps` steps alternate softmax and CRF (`--repeats` each,
ABBA order, so drifts in machine load hit both alike). A stamping callback records each step's end; the figure per
head is the median step time over all calls (first step of each call dropped). The ratio CRF / softmax is printed;
the issue's target is <= 1.5.

Usage:
    python benchmarks/crf_speed.py [--steps N] [--repeats R] [--batch B] [--steps-per-sentence T] [--xla]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import StepTimes  # noqa: E402

import kmtl  # noqa: E402

TAGS = 50
VOCABULARY = 5000


def build(crf: bool, xla: bool) -> kmtl.MultiTaskModel:
    loss = kmtl.losses.CRFLoss() if crf else None
    task = kmtl.Task("tags", "multiclass", num_classes=TAGS, per_step=True, loss=loss)
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCABULARY, 100, mask_zero=True)(tokens)
    x = keras.layers.Bidirectional(keras.layers.LSTM(100, return_sequences=True))(x)
    model = kmtl.MultiTaskModel(tokens, {"tags": kmtl.heads.task_head(task, x)}, tasks=[task])
    model.compile(optimizer="adam", weighting="equal", jit_compile=xla)
    return model


def data(batch: int, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    count = batch * 8
    tokens = rng.integers(1, VOCABULARY, size=(count, steps))
    lengths = rng.integers(int(steps * 0.8), steps + 1, size=count)
    tokens[np.arange(steps)[None] >= lengths[:, None]] = 0
    labels = rng.integers(0, TAGS, size=(count, steps))
    labels[(tokens == 0) | (rng.random(labels.shape) < 0.1)] = -1
    return tokens, {"tags": labels}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps-per-sentence", type=int, default=40)
    parser.add_argument("--xla", action="store_true", help="compile the train steps with XLA")
    args = parser.parse_args(argv)
    x, y = data(args.batch, args.steps_per_sentence)
    models = {"softmax": build(False, args.xla), "crf": build(True, args.xla)}
    times = {name: [] for name in models}
    for model in models.values():
        model.fit(x, y, batch_size=args.batch, epochs=1, steps_per_epoch=3, verbose=0)  # trace
    order = ["softmax", "crf", "crf", "softmax"] * args.repeats
    for name in order:
        steps = times[name]
        repeat = -(-args.steps // 8)  # the data holds 8 batches
        models[name].fit(np.tile(x, (repeat, 1)), {"tags": np.tile(y["tags"], (repeat, 1))},
                         batch_size=args.batch, epochs=1, steps_per_epoch=args.steps, verbose=0,
                         callbacks=[StepTimes(steps)])
    median = {name: statistics.median(steps) for name, steps in times.items()}
    print(f"{TAGS} tags, batch {args.batch}, {args.steps_per_sentence} steps per sentence, xla={args.xla}")
    for name in models:
        print(f"  {name:8s} head: {median[name] * 1e3:7.2f} ms/step (median of {len(times[name])} steps)")
    print(f"  ratio crf/softmax: {median['crf'] / median['softmax']:.2f}x (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
