r"""Turns a trained model into a self-contained SavedModel, and loads it back.

The SavedModel (tag `serve`, signature `serving_default`) takes serialized
tf.train.Example (video level) or tf.train.SequenceExample (frame level) records in
`example_bytes` and returns, per record, `video_id`, and the top 20 `class_indexes` and
`predictions`. Parsing, dequantization, L2 normalisation and the model's inference mode
(batch-norm moving statistics included) are inside, so it runs with
`tf.saved_model.load` alone, with no code from this repository.

eval.py writes one to `<train_dir>/inference_model` for each checkpoint it evaluates.
To export without evaluating:

  python export_model.py --train_dir=/tmp/yt8m_model --output_dir=/tmp/yt8m_export
"""

import dataclasses

import tensorflow as tf
from absl import logging

import atomic_write
import cli
import models
import readers
import trained_model
from errors import UserError
from settings import setting

TOP_PREDICTIONS_IN_OUTPUT = 20


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """The export settings, each a flag of export_model.py."""

    train_dir: str = setting("/tmp/yt8m_model/", "Training directory to export from.")
    checkpoint: str = setting("", "Checkpoint prefix to export; default: the latest.")
    output_dir: str = setting("", "Directory to write the SavedModel to.")


class InferenceModule(tf.Module):
    """A model with its reader's parsing and the input normalisation, for serving."""

    def __init__(self, model: models.BaseModel, reader: readers.BaseReader):
        super().__init__()
        self.model = model
        self.reader = reader

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="example_bytes")])
    def serve(self, example_bytes):
        """Returns video_id, class_indexes and predictions (top 20) of serialized records."""
        batch = self.reader.parse_batch(example_bytes)
        predictions = self.predictions(batch["video_matrix"], batch["num_frames"])
        # Outside XLA: XLA's CPU top-k is slower than TensorFlow's kernel.
        top = tf.nn.top_k(predictions, k=min(TOP_PREDICTIONS_IN_OUTPUT, self.reader.num_classes))
        return {
            "video_id": batch["video_ids"],
            "class_indexes": top.indices,
            "predictions": top.values,
        }

    @tf.function(jit_compile=True)
    def predictions(self, video_matrix, num_frames):
        """Returns the model's predictions in inference mode; XLA-compiled (no strings)."""
        return models.forward(self.model, video_matrix, num_frames, training=False)["predictions"]


def export(model: models.BaseModel, reader: readers.BaseReader, output_dir: str) -> None:
    """Writes the SavedModel to output_dir, replacing any model there only once complete."""
    module = InferenceModule(model, reader)
    signatures = {"serving_default": module.serve.get_concrete_function()}
    with atomic_write.replaced_atomically(output_dir) as temporary:
        tf.saved_model.save(module, temporary, signatures=signatures)


def load(saved_model_dir: str):
    """Returns the serving function of an exported model: records in, top 20 out.

    Call it as serve(example_bytes=<string tensor>). It keeps the loaded SavedModel alive:
    a bare signature whose SavedModel object was garbage-collected loses its variables.
    """
    loaded = tf.saved_model.load(saved_model_dir)

    def serve(example_bytes):
        return loaded.signatures["serving_default"](example_bytes=example_bytes)

    return serve


def main(config: ExportConfig) -> None:
    """Exports a checkpoint of --train_dir as a SavedModel in --output_dir."""
    if not config.output_dir:
        raise UserError("--output_dir is required: the directory to write the SavedModel to.")
    model, reader, checkpoint_path = trained_model.restored_model(
        config.train_dir, config.checkpoint or None
    )
    export(model, reader, config.output_dir)
    logging.info("Exported %s to %s", checkpoint_path, config.output_dir)


if __name__ == "__main__":
    cli.run(main, ExportConfig)
