"""TF-Serving side files: warm-up records and an example REST request body."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf


def write_rest_request(path: Path, batch: dict, signature: str) -> None:
    """Writes a TF-Serving REST predict body (`{"signature_name": ..., "instances": [...]}`) for one example."""
    instance = {name: np.asarray(value)[0].tolist() for name, value in batch.items()}
    path.write_text(json.dumps({"signature_name": signature, "instances": [instance]}))


def write_warmup_requests(path: Path, batch: dict, signature: str, model_name: str) -> bool:
    """Writes `tf_serving_warmup_requests`: a TFRecord of `PredictionLog` protos TF Serving replays at load.

    Needs the optional `tensorflow-serving-api` package (`pip install kmtl[serving]`).

    Returns:
        True if the records were written, False if tensorflow-serving-api is not installed.
    """
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        return False
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
    for name, value in batch.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(log.SerializeToString())
    return True
