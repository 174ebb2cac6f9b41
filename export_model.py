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

import os

import tensorflow as tf
from absl import app, flags, logging

import models
import readers
import utils

_TOP_PREDICTIONS_IN_OUTPUT = 20
INFERENCE_MODEL_DIR = "inference_model"


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
        top = tf.nn.top_k(predictions, k=min(_TOP_PREDICTIONS_IN_OUTPUT, self.reader.num_classes))
        return {
            "video_id": batch["video_ids"],
            "class_indexes": top.indices,
            "predictions": top.values,
        }

    @tf.function(jit_compile=True)
    def predictions(self, video_matrix, num_frames):
        """Returns the model's predictions in inference mode; XLA-compiled (no strings)."""
        model_input = utils.model_input(video_matrix, num_frames)
        return self.model(model_input, num_frames=num_frames, training=False)["predictions"]


def export(model: models.BaseModel, reader: readers.BaseReader, output_dir: str) -> None:
    """Writes the SavedModel to output_dir, replacing any model there only once complete."""
    module = InferenceModule(model, reader)
    temporary = f"{output_dir.rstrip('/')}.tmp{os.getpid()}"
    if tf.io.gfile.exists(temporary):
        tf.io.gfile.rmtree(temporary)
    tf.saved_model.save(
        module, temporary, signatures={"serving_default": module.serve.get_concrete_function()}
    )
    previous = f"{output_dir.rstrip('/')}.old{os.getpid()}"
    if tf.io.gfile.exists(output_dir):
        tf.io.gfile.rename(output_dir, previous)
    tf.io.gfile.rename(temporary, output_dir)
    if tf.io.gfile.exists(previous):
        tf.io.gfile.rmtree(previous)


def load(saved_model_dir: str):
    """Returns the serving function of an exported model: records in, top 20 out.

    Call it as serve(example_bytes=<string tensor>). It keeps the loaded SavedModel alive:
    a bare signature whose SavedModel object was garbage-collected loses its variables.
    """
    loaded = tf.saved_model.load(saved_model_dir)

    def serve(example_bytes):
        return loaded.signatures["serving_default"](example_bytes=example_bytes)

    return serve


def model_from_flags(train_dir: str) -> tuple[models.BaseModel, readers.BaseReader, dict]:
    """Returns (new model, reader, model_flags dict) as train_dir's model_flags.json says.

    Raises:
      utils.UserError: train_dir has no model_flags.json.
    """
    model_flags = utils.read_model_flags(train_dir, "Did you run train.py on the same --train_dir?")
    missing = [key for key in models.ORIGINAL_MODEL_FLAGS if key not in model_flags]
    if missing:
        raise utils.UserError(f"{utils.model_flags_path(train_dir)} lacks the keys {missing}.")
    reader = readers.create_reader(
        model_flags["frame_features"],
        model_flags["feature_names"],
        model_flags["feature_sizes"],
        # Frames stay uint8 until the (XLA-compiled) model step dequantizes them.
        quantized_frames=model_flags["frame_features"],
    )
    name, hyperparameters = models.model_settings(model_flags)
    return models.create_built_model(name, reader, hyperparameters), reader, model_flags


def restored_model(train_dir: str, checkpoint_path: str | None = None):
    """Returns (model, reader, checkpoint path): the model restored from a checkpoint.

    Args:
      train_dir: a training directory (model_flags.json and checkpoints).
      checkpoint_path: a checkpoint prefix; default the latest in train_dir.

    Raises:
      utils.UserError: no model_flags.json or no checkpoint.
    """
    model, reader, _ = model_from_flags(train_dir)
    checkpoint_path = checkpoint_path or tf.train.latest_checkpoint(train_dir)
    if not checkpoint_path:
        raise utils.UserError(f"No checkpoint found in --train_dir={train_dir}.")
    restore_weights(tf.train.Checkpoint(model=model), checkpoint_path)
    return model, reader, checkpoint_path


def restore_weights(checkpoint: tf.train.Checkpoint, checkpoint_path: str) -> None:
    """Restores the model's weights (not the optimizer's); fails if any is missing.

    Raises:
      utils.UserError: the checkpoint lacks some of the model's variables, e.g. because
        model_flags.json describes another model than the one trained.
    """
    try:
        checkpoint.restore(checkpoint_path).assert_existing_objects_matched().expect_partial()
    except AssertionError as error:
        raise utils.UserError(
            f"{checkpoint_path} does not match the model that model_flags.json describes: "
            f"{str(error).split(' Showing')[0]}"
        ) from None


FLAGS = flags.FLAGS


def main(argv):
    """Exports a checkpoint of --train_dir as a SavedModel in --output_dir."""
    del argv
    model, reader, checkpoint_path = restored_model(FLAGS.train_dir, FLAGS.checkpoint or None)
    export(model, reader, FLAGS.output_dir)
    logging.info("Exported %s to %s", checkpoint_path, FLAGS.output_dir)


if __name__ == "__main__":
    flags.DEFINE_string("train_dir", "/tmp/yt8m_model/", "Training directory to export from.")
    flags.DEFINE_string("checkpoint", "", "Checkpoint prefix to export; default: the latest.")
    flags.DEFINE_string("output_dir", "", "Directory to write the SavedModel to.")
    flags.mark_flag_as_required("output_dir")
    app.run(utils.exit_on_user_error(main))
