import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Two logical CPU devices, so tests can compare `tf.distribute.MirroredStrategy` with one device. This must run
# before TensorFlow initialises its devices; if something initialised them already, those tests skip.
import tensorflow as tf  # noqa: E402

try:
    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:
    pass

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One `MirroredStrategy` over two logical CPU devices for the whole session (several strategies with
    collective ops in one process can mix up their collective instance keys)."""
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices (configured in tests/conftest.py)")
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
