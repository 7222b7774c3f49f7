"""`to_dataset(pad_to=...)`: batches padded to a few fixed lengths, so a training step traces (and XLA compiles) a
bounded number of times however many episode lengths the data holds (issue 16)."""

import keras
import numpy as np
import pytest

import kmtl
from kmtl.data.sequences import SequenceData, to_dataset


def _data(num=40, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, num)
    return SequenceData(
        features=[rng.normal(size=(n, 2)) for n in lengths],
        labels={
            "alive": rng.integers(0, 2, num).astype("int32"),
            "risk": [rng.integers(0, 2, n).astype("int32") for n in lengths],
        },
        groups=np.arange(num),
        feature_names=["a", "b"],
    )


def _lengths(dataset):
    return sorted({int(inputs["features"].shape[1]) for inputs, _ in dataset})


def test_batches_come_in_the_bucket_lengths_only():
    data = _data()
    assert len(_lengths(to_dataset(data, 4))) > 3  # each batch's longest episode
    assert set(_lengths(to_dataset(data, 4, pad_to="buckets"))) <= {8, 16, 32}
    assert _lengths(to_dataset(data, 4, pad_to=[40])) == [40]


def test_padding_to_a_bucket_keeps_every_value_and_marks_the_rest():
    data = _data(num=4)
    plain = next(iter(to_dataset(data, 4)))
    padded = next(iter(to_dataset(data, 4, pad_to=[64])))
    steps = plain[0]["features"].shape[1]
    np.testing.assert_array_equal(padded[0]["features"][:, :steps], plain[0]["features"])
    np.testing.assert_array_equal(padded[0]["mask"][:, steps:], 0.0)
    np.testing.assert_array_equal(padded[1]["risk"][:, :steps], plain[1]["risk"])
    np.testing.assert_array_equal(padded[1]["risk"][:, steps:], -1)
    np.testing.assert_array_equal(padded[1]["alive"], plain[1]["alive"])


@pytest.mark.parametrize("pad_to", ["nope", [], [0, 8], 8])
def test_bad_pad_to_is_refused(pad_to):
    with pytest.raises(ValueError, match="pad_to"):
        to_dataset(_data(), 4, pad_to=pad_to)


def _trace_count(model, dataset):
    traces = []
    step = model.train_step

    def counting(data):
        traces.append(1)  # Python runs once per trace
        return step(data)

    model.train_step = counting
    model.fit(dataset, epochs=2, verbose=0)
    return len(traces)


def test_bucketed_batches_bound_the_traces_of_a_compiled_step():
    task = kmtl.Task("risk", "binary", per_step=True, metrics=[])
    features = keras.Input((None, 2), name="features")
    mask = keras.Input((None,), name="mask")
    hidden = keras.layers.Dense(3, activation="tanh")(features)
    model = kmtl.MultiTaskModel(
        {"features": features, "mask": mask}, {"risk": kmtl.heads.task_head(task, hidden)}, tasks=[task]
    )
    model.compile(optimizer="sgd", jit_compile=True)
    data = _data()
    labels = ["risk"]
    bucketed = to_dataset(data, 4, tasks=labels, pad_to=[16, 32])
    # At most one trace per (batch size, length): the last batch is the only smaller one.
    assert _trace_count(model, bucketed) <= 2 * 2
    assert len(_lengths(to_dataset(data, 4, tasks=labels))) > 4
