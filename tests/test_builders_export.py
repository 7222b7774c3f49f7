"""Every builder's model exports for TF Serving and runs in a process that never imports kmtl."""

import subprocess
import sys
import textwrap

import keras
import pytest
import numpy as np

import kmtl

TASKS = [
    kmtl.Task("a", "binary"),
    kmtl.Task("b", "regression", units=2),
    kmtl.Task("c", "multiclass", num_classes=3, label_names=["x", "y", "z"]),
]


def _builders():
    def inputs():
        return keras.Input((6,), name="features")

    def with_trunk(build):
        x = inputs()
        return build(x, keras.layers.Dense(8, activation="relu", name="trunk")(x))

    b = kmtl.builders
    return {
        "hard_sharing": lambda: with_trunk(lambda x, h: b.hard_sharing(x, h, TASKS)),
        "soft_sharing": lambda: b.soft_sharing(inputs(), TASKS, tower_units=(4,)),
        "cross_stitch": lambda: b.cross_stitch(inputs(), TASKS, units=(4, 4)),
        "sluice": lambda: b.sluice(inputs(), TASKS, units=(4, 4)),
        "hierarchy": lambda: b.hierarchy(inputs(), TASKS, {"a": 1, "b": 2, "c": 2}, units=4,
                                         estimate_links={"c": ["a"]}),
        "split": lambda: b.split(inputs(), TASKS, units=(4, 4)),
        "mmoe": lambda: with_trunk(lambda x, h: b.mmoe(x, h, TASKS, num_experts=2, expert_units=4)),
        "ple": lambda: with_trunk(lambda x, h: b.ple(x, h, TASKS, shared_experts=1, expert_units=4)),
        "stacked_heads_model": lambda: with_trunk(lambda x, h: b.stacked_heads_model(x, h, TASKS)),
    }


@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_every_builder_exports_and_loads_without_kmtl(tmp_path):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected = {}
    for name, build in _builders().items():
        model = build()
        assert sorted(model.output) == ["a", "b", "c"], name
        kmtl.export.for_serving(model, tmp_path / name, warmup=False)
        expected[name] = model.predict(x, verbose=0)
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import tensorflow as tf
        root = sys.argv[1]
        x = np.load(f"{root}/x.npy")
        out = {}
        for name in sys.argv[2:]:
            serve = tf.saved_model.load(f"{root}/{name}/1").signatures["serving_default"]
            for key, value in serve(features=tf.constant(x)).items():
                if value.dtype != tf.string:
                    out[f"{name}:{key}"] = value.numpy()
        assert "kmtl" not in sys.modules
        np.savez(f"{root}/served.npz", **out)
        """
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path), *expected], check=True, timeout=300)
    served = np.load(tmp_path / "served.npz")
    for name, predictions in expected.items():
        np.testing.assert_allclose(served[f"{name}:a"], predictions["a"][:, 0], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(served[f"{name}:b"], predictions["b"], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(served[f"{name}:c"], predictions["c"], atol=1e-5, err_msg=name)
        np.testing.assert_array_equal(served[f"{name}:c_class_id"], predictions["c"].argmax(-1), err_msg=name)
