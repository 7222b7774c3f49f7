"""The old name of `tiny.py`, kept while tests/test_step_properties.py still imports it; new code imports `tiny`."""

from tiny import tiny_data, tiny_model


def make_model(weighting, optimizer=None, head_units=(3,), seed=0, builder=None, **compile_kwargs):
    return tiny_model(weighting, optimizer=optimizer, head_units=head_units, seed=seed, builder=builder,
                      **compile_kwargs)


def make_data(n=16, seed=1):
    return tiny_data(n=n, seed=seed)
