r"""Turns a trained model into a self-contained SavedModel, and loads it back.

The SavedModel (tag `serve`, signature `serving_default`) takes serialized
tf.train.Example (video level) or tf.train.SequenceExample (frame level) records in
`example_bytes` and returns, per record, `video_id`, and the top 20 `class_indexes` and
`predictions`. Parsing, dequantization, L2 normalisation and the model's inference mode
(batch-norm moving statistics included) are inside, so it runs with
`tf.saved_model.load` alone, with no code from this repository.

eval.py writes one to `<train_dir>/inference_model` for each checkpoint it evaluates.
A checkpoint holding weight averages (train.py --ema_decay) is exported with the averages
in place of the trainable weights. To export without evaluating:

  python export_model.py --train_dir=/tmp/yt8m_model --output_dir=/tmp/yt8m_export

The segment model (eval.py --segment_labels writes it to
`<train_dir>/segment_inference_model`) takes the same SequenceExamples and `class_ids`,
the classes to rank (int32; all of them for no restriction); it cuts every video into
5-frame segments (the last one shorter) and returns, per segment, `segment_id`
("<video_id>:<start frame>") and its top 20 `class_indexes` and `predictions` among
class_ids.
"""

import quiet_tensorflow  # noqa: F401 (first: hides TensorFlow's start-up noise)

# isort: split
import dataclasses
import os

import tensorflow as tf
from absl import logging

import atomic_write
import cli
import models
import readers
import trained_model
from errors import UserError
from settings import Settings, setting

TOP_PREDICTIONS_IN_OUTPUT = 20
# Segments the segment model scores per model call: a fixed shape for XLA, and a bound
# on memory whatever the number of segments of the records passed in.
SEGMENTS_PER_CALL = 512
# Beside saved_model.pb: the checkpoint the weights came from, so eval.py exports anew
# only for a new checkpoint.
EXPORTED_FROM_FILE = "exported_from_checkpoint.txt"


@dataclasses.dataclass(frozen=True)
class ExportConfig(Settings):
    """The export settings, each a flag of export_model.py."""

    train_dir: str = setting("/tmp/yt8m_model/", "Training directory to export from.")
    checkpoint: str = setting("", "Checkpoint prefix to export; default: the latest.")
    output_dir: str = setting("", "Directory to write the SavedModel to.")
    segment_labels: bool = setting(
        False, "Export the segment model (as eval.py --segment_labels writes it)."
    )


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


class SegmentInferenceModule(InferenceModule):
    """A frame-level model that scores the 5-frame segments of whole videos, for serving.

    Faithful to the original's segment inference: a video of n frames gives the segments
    starting at 0, 5, 10, ... below n, each scored with num_frames = its real frames (the
    last one may be shorter, its missing frames zero). The model call (predictions) is
    the per-video module's.
    """

    def __init__(self, model: models.BaseModel, reader: readers.YT8MFrameFeatureReader):
        super().__init__(model, reader.per_video())
        self.segment_size = reader.segment_size

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="example_bytes"),
            tf.TensorSpec([None], tf.int32, name="class_ids"),
        ]
    )
    def serve(self, example_bytes, class_ids):
        """Returns segment_id, class_indexes and predictions (top 20 among class_ids)."""
        batch = self.reader.parse_batch(example_bytes)
        segment_ids, frames, num_frames = self.segments(batch)
        num_segments = tf.shape(frames)[0]
        padding = -num_segments % SEGMENTS_PER_CALL
        frames = tf.pad(frames, [[0, padding], [0, 0], [0, 0]])
        num_frames = tf.pad(num_frames, [[0, padding]], constant_values=1)
        shape = tf.concat([[-1, SEGMENTS_PER_CALL], tf.shape(frames)[1:]], axis=0)
        k = tf.minimum(TOP_PREDICTIONS_IN_OUTPUT, tf.size(class_ids))

        def top_classes(chunk):
            chunk_frames, chunk_num_frames = chunk
            predictions = self.predictions(chunk_frames, chunk_num_frames)
            top = tf.nn.top_k(tf.gather(predictions, class_ids, axis=1), k=k)
            return top.values, tf.gather(class_ids, top.indices)

        scores, classes = tf.map_fn(
            top_classes,
            (tf.reshape(frames, shape), tf.reshape(num_frames, [-1, SEGMENTS_PER_CALL])),
            fn_output_signature=(tf.float32, tf.int32),
        )
        return {
            "segment_id": segment_ids,
            "class_indexes": tf.reshape(classes, [-1, k])[:num_segments],
            "predictions": tf.reshape(scores, [-1, k])[:num_segments],
        }

    def segments(self, batch):
        """Returns (segment ids, uint8 [S, 5, D] frames, int32 [S] real frames) of a batch."""
        video_matrix = batch["video_matrix"]
        slots = self.reader.max_frames // self.segment_size
        starts = tf.range(slots) * self.segment_size
        real_frames = tf.clip_by_value(
            batch["num_frames"][:, tf.newaxis] - starts, 0, self.segment_size
        )
        is_segment = tf.reshape(real_frames > 0, [-1])
        frames = tf.reshape(
            video_matrix[:, : slots * self.segment_size],
            [-1, self.segment_size, sum(self.reader.feature_sizes)],
        )
        segment_ids = readers.segment_ids(
            tf.repeat(batch["video_ids"], slots), tf.tile(starts, tf.shape(batch["num_frames"]))
        )
        return (
            tf.boolean_mask(segment_ids, is_segment),
            tf.boolean_mask(frames, is_segment),
            tf.boolean_mask(tf.reshape(real_frames, [-1]), is_segment),
        )


def export(
    model: models.BaseModel,
    reader: readers.BaseReader,
    output_dir: str,
    checkpoint_path: str | None = None,
) -> None:
    """Writes the SavedModel to output_dir, replacing any model there only once complete.

    A reader in segment mode gives the segment model, any other the per-video one. The
    checkpoint_path the weights came from is recorded beside it (see exported_from).
    """
    if reader.segment_labels:
        module = SegmentInferenceModule(model, reader)
    else:
        module = InferenceModule(model, reader)
    signatures = {"serving_default": module.serve.get_concrete_function()}
    with atomic_write.replaced_atomically(output_dir) as temporary:
        tf.saved_model.save(module, temporary, signatures=signatures)
        if checkpoint_path:
            with tf.io.gfile.GFile(os.path.join(temporary, EXPORTED_FROM_FILE), "w") as file:
                file.write(checkpoint_identity(checkpoint_path))


def checkpoint_identity(checkpoint_path: str) -> str:
    """Returns the checkpoint's path with its index file's size and time of writing.

    A checkpoint written anew under the same name (training started over by hand) then
    differs from the one exported before.
    """
    index = tf.io.gfile.stat(checkpoint_path + ".index")
    return f"{checkpoint_path} {index.length} {index.mtime_nsec}"


def exported_from(saved_model_dir: str) -> str | None:
    """Returns checkpoint_identity of what saved_model_dir was exported from, if known."""
    path = os.path.join(saved_model_dir, EXPORTED_FROM_FILE)
    saved_model = os.path.join(saved_model_dir, "saved_model.pb")
    if not (tf.io.gfile.exists(saved_model) and tf.io.gfile.exists(path)):
        return None
    with tf.io.gfile.GFile(path) as file:
        return file.read()


def load(saved_model_dir: str):
    """Returns the serving function of an exported model: records in, top 20 out.

    Call it as serve(example_bytes=<string tensor>) (the segment model also takes
    class_ids=<int32 tensor>). It keeps the loaded SavedModel alive: a bare signature
    whose SavedModel object was garbage-collected loses its variables.
    """
    loaded = tf.saved_model.load(saved_model_dir)

    def serve(**inputs):
        return loaded.signatures["serving_default"](**inputs)

    return serve


def main(config: ExportConfig) -> None:
    """Exports a checkpoint of --train_dir as a SavedModel in --output_dir."""
    if not config.output_dir:
        raise UserError("--output_dir is required: the directory to write the SavedModel to.")
    model, reader, checkpoint_path = trained_model.restored_model(
        config.train_dir, config.checkpoint or None, config.segment_labels
    )
    export(model, reader, config.output_dir, checkpoint_path)
    logging.info("Exported %s to %s", checkpoint_path, config.output_dir)


if __name__ == "__main__":
    cli.run(main, ExportConfig)
