r"""Writes Kaggle-style predictions (top 20 classes per video) from the inference model.

  python inference.py --train_dir=/tmp/yt8m_model \
      --input_data_pattern='/tmp/yt8m_sample/video/test*.tfrecord' \
      --output_file=/tmp/predictions.csv

Runs <train_dir>/inference_model, the SavedModel that eval.py writes (with the weight
averages of train.py --ema_decay where the checkpoint holds them), over serialized
records in whole batches; no model code is needed. The CSV has the header
`VideoId,LabelConfidencePairs` and one row per input video, in input order:
`<id>,<class> <score> <class> <score> ...`, classes by descending score. The file is
written under a temporary name and renamed when complete.

--output_model_tgz packs the inference model with model_flags.json (e.g. for upload);
--input_model_tgz runs such an archive instead of a training directory.

With --segment_labels it runs <train_dir>/segment_inference_model (eval.py
--segment_labels writes it) over every 5-frame segment of every video and writes the
Kaggle 2019 segment submission (segment_submission.py): for each class of
--segment_label_ids_file, its --segment_max_pred best segments.
"""

import quiet_tensorflow  # noqa: F401 (first: hides TensorFlow's start-up noise)

# isort: split
import dataclasses
import io
import os
import posixpath
import tarfile
import time

import numpy as np
import tensorflow as tf
from absl import logging

import atomic_write
import cli
import export_model
import predictions_csv
import readers
import segment_submission
import trained_model
from errors import UserError
from settings import AT_LEAST_ONE, Range, Settings, setting

# The original's 1,000 segment-rated classes, shipped beside this script.
SEGMENT_LABEL_IDS_FILE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "segment_label_ids.csv"
)


@dataclasses.dataclass(frozen=True)
class InferenceConfig(Settings):
    """The prediction settings, each a flag of inference.py."""

    train_dir: str = setting("")
    input_data_pattern: str = setting("", "File glob of the TFRecord files to predict labels for.")
    input_model_tgz: str = setting(
        "", "A .tgz written by --output_model_tgz, used instead of train_dir."
    )
    untar_model_dir: str = setting(
        "/tmp/yt8m-model", "Directory --input_model_tgz is unpacked into."
    )
    output_file: str = setting("", "The CSV file to write the predictions to.")
    output_model_tgz: str = setting("", "If set, also pack the inference model into this .tgz.")
    batch_size: int = setting(512)
    num_readers: int = setting(1)
    top_k: int = setting(
        20,
        "How many predictions to write per video.",
        Range(1, export_model.TOP_PREDICTIONS_IN_OUTPUT),
    )
    segment_labels: bool = setting(
        False,
        "Write the Kaggle 2019 segment submission (Class,Segments) from the segment model "
        "eval.py --segment_labels writes, instead of per-video predictions.",
    )
    segment_max_pred: int = setting(
        100000, "Segments kept per class in segment mode.", AT_LEAST_ONE
    )
    segment_label_ids_file: str = setting(
        SEGMENT_LABEL_IDS_FILE,
        "The classes ranked in segment mode: a file (local, gs:// or http(s) URL) with "
        "one class id per line; other lines, such as the header, are skipped.",
    )


# ---------------------------------------------------------------------------------------
# The model .tgz.


def write_model_tgz(train_dir: str, model_dir: str, output_path: str) -> None:
    """Packs model_dir (under train_dir) and model_flags.json into a .tgz, atomically."""
    with (
        atomic_write.replaced_atomically(output_path) as temporary,
        tf.io.gfile.GFile(temporary, "wb") as file,
        tarfile.open(fileobj=file, mode="w:gz") as archive,
    ):
        model_flags = trained_model.model_flags_path(train_dir)
        add_to_tar(archive, model_flags, trained_model.MODEL_FLAGS_FILE)
        for directory, _, names in tf.io.gfile.walk(model_dir):
            relative = os.path.relpath(directory, train_dir)
            for name in names:
                add_to_tar(archive, os.path.join(directory, name), posixpath.join(relative, name))
    logging.info("Tarred model onto %s", output_path)


def add_to_tar(archive: tarfile.TarFile, path: str, name: str) -> None:
    """Adds one file, read through tf.io.gfile, to an open archive."""
    with tf.io.gfile.GFile(path, "rb") as file:
        content = file.read()
    info = tarfile.TarInfo(name)
    info.size = len(content)
    archive.addfile(info, io.BytesIO(content))


def extract_model_tgz(tgz_path: str, output_dir: str) -> None:
    """Unpacks a model .tgz into output_dir, refusing paths that would leave it."""
    if not tf.io.gfile.exists(tgz_path):
        raise UserError(f"--input_model_tgz={tgz_path!r}: no such file.")
    tf.io.gfile.makedirs(output_dir)
    with (
        tf.io.gfile.GFile(tgz_path, "rb") as file,
        tarfile.open(fileobj=file, mode="r:gz") as archive,
    ):
        for member in archive.getmembers():
            name = posixpath.normpath(member.name)
            if name.startswith(("/", "..")) or not member.isfile():
                continue
            target = os.path.join(output_dir, name)
            tf.io.gfile.makedirs(os.path.dirname(target))
            with tf.io.gfile.GFile(target, "wb") as output:
                output.write(archive.extractfile(member).read())


# ---------------------------------------------------------------------------------------
# Predictions.


def formatted_batch(outputs: dict, top_k: int) -> dict[str, tf.Tensor]:
    """Returns one batch's CSV text, formatted by TensorFlow's string ops.

    Returns:
      video_ids: the raw ids; lines: "<id>,<c1> <s1> <c2> <s2> ..." with the scores in
      %g format; plain_ids: whether each id needs no CSV quoting (no comma, quote or
      line break).
    """
    classes = tf.strings.as_string(outputs["class_indexes"][:, :top_k])
    scores = tf.strings.as_string(outputs["predictions"][:, :top_k], shortest=True)  # %g
    pairs = tf.strings.reduce_join(
        tf.strings.join([classes, scores], separator=" "), axis=1, separator=" "
    )
    video_ids = outputs["video_id"]
    return {
        "video_ids": video_ids,
        "pairs": pairs,
        "lines": tf.strings.join([video_ids, pairs], separator=","),
        "plain_ids": tf.strings.regex_full_match(video_ids, predictions_csv.PLAIN_ID),
    }


def write_batch(file, batch: dict, first_video: int, data_pattern: str) -> None:
    """Appends one formatted batch to the CSV, quoting the ids that need it.

    Raises:
      UserError: an id is not UTF-8 text, naming its record (the first_video-th of the
        input is the batch's first).
    """
    try:
        if batch["plain_ids"].numpy().all():
            file.write(b"\n".join(batch["lines"].numpy()).decode("utf-8") + "\n")
            return
        for video_id, pairs in zip(batch["video_ids"].numpy(), batch["pairs"].numpy()):
            file.write(predictions_csv.row(video_id.decode("utf-8"), pairs.decode("utf-8")))
    except UnicodeDecodeError:
        raise UserError(invalid_id(batch["video_ids"].numpy(), first_video, data_pattern)) from None


def invalid_id(video_ids: np.ndarray, first_video: int, data_pattern: str) -> str:
    """Returns the error naming the first id of a batch that is not UTF-8, and its record."""
    for position, video_id in enumerate(video_ids):
        try:
            video_id.decode("utf-8")
        except UnicodeDecodeError:
            path, record = readers.record_location(data_pattern, first_video + position)
            return (
                f"{path}: record {record}: the video id {video_id!r} is not UTF-8 text, "
                "which the CSV holds; nothing was written."
            )
    raise AssertionError("every id decodes")


def model_outputs(map_batch, data_pattern: str, batch_size: int) -> tf.data.Dataset:
    """Returns map_batch (the model and formatting) of every batch of records, in order.

    They run inside the tf.data pipeline, so they overlap with writing the previous batch.
    """
    records = readers.serialized_records(
        readers.list_files(data_pattern), batch_size, training=False, num_epochs=1, num_readers=1
    )
    return records.batch(batch_size).map(map_batch, num_parallel_calls=2).prefetch(2)


def served_padded(serve, serialized: tf.Tensor, batch_size: int) -> dict[str, tf.Tensor]:
    """Returns serve's outputs for a batch of records, run as a batch of batch_size.

    A smaller (last) batch is padded with copies of its last record and the outputs cut
    back, so the model, XLA-compiled per batch shape, compiles once per process.
    """
    rows = tf.shape(serialized)[0]
    padding = tf.repeat(serialized[-1:], tf.maximum(batch_size - rows, 0))
    outputs = serve(example_bytes=tf.concat([serialized, padding], axis=0))
    return {name: value[:rows] for name, value in outputs.items()}


class ProgressLog:
    """Logs the original's progress line after each batch."""

    def __init__(self):
        self.num_examples = 0
        self.start = time.time()

    def add(self, num_examples: int) -> None:
        """Counts one batch's examples and logs the totals."""
        self.num_examples += num_examples
        elapsed = time.time() - self.start
        logging.info(
            "num examples processed: %d elapsed seconds: %.2f examples/sec: %.2f",
            self.num_examples,
            elapsed,
            self.num_examples / max(elapsed, 1e-9),
        )


def write_predictions(
    serve,
    reader: readers.BaseReader,
    data_pattern: str,
    output_file: str,
    batch_size: int,
    top_k: int,
) -> int:
    """Runs the model over every record once, in input order, and writes the CSV.

    Returns:
      The number of videos written.
    """
    batches = model_outputs(
        lambda serialized: formatted_batch(served_padded(serve, serialized, batch_size), top_k),
        data_pattern,
        batch_size,
    )
    progress = ProgressLog()
    with (
        atomic_write.replaced_atomically(output_file) as temporary,
        tf.io.gfile.GFile(temporary, "w") as file,
        reader.errors_explained(data_pattern),
    ):
        file.write(predictions_csv.HEADER + "\n")
        for batch in batches:
            write_batch(file, batch, progress.num_examples, data_pattern)
            progress.add(int(batch["lines"].shape[0]))
        if not progress.num_examples:
            raise UserError(no_videos(data_pattern))
    return progress.num_examples


def no_videos(data_pattern: str) -> str:
    """Returns the error for input files that hold no record."""
    return (
        f"The files of --input_data_pattern='{data_pattern}' hold no videos to predict; "
        "nothing was written."
    )


def write_segment_predictions(
    serve, reader: readers.BaseReader, class_ids: np.ndarray, config: InferenceConfig
) -> int:
    """Scores every segment of every record and writes the Kaggle 2019 submission.

    Args:
      serve: the segment model's serving function.
      reader: the model's reader, to explain bad records.
      class_ids: the classes to rank (the whitelist).
      config: the settings (data, output file, top_k, segment_max_pred).

    Returns:
      The number of segments scored.
    """
    class_ids = tf.constant(class_ids)
    batches = model_outputs(
        lambda serialized: serve(example_bytes=serialized, class_ids=class_ids),
        config.input_data_pattern,
        config.batch_size,
    )
    top_segments = segment_submission.TopSegments(config.segment_max_pred)
    progress = ProgressLog()
    with reader.errors_explained(config.input_data_pattern):
        for batch in batches:
            segment_submission.check_segment_ids(batch["segment_id"].numpy())
            top_segments.add(
                batch["segment_id"].numpy(),
                batch["class_indexes"][:, : config.top_k].numpy(),
                batch["predictions"][:, : config.top_k].numpy(),
            )
            progress.add(int(batch["segment_id"].shape[0]))
    if not progress.num_examples:
        raise UserError(no_videos(config.input_data_pattern))
    logging.info("Post-processing segment predictions...")
    logging.info("Writing sorted segment predictions to: %s", config.output_file)
    segment_submission.write(config.output_file, top_segments)
    return progress.num_examples


def check_settings(config: InferenceConfig) -> None:
    """Raises a one-line UserError for missing or contradictory flags."""
    if config.input_model_tgz and config.train_dir:
        raise UserError(
            "You cannot supply --train_dir if supplying --input_model_tgz; the model is "
            "unpacked into --untar_model_dir and read from there."
        )
    if not config.input_model_tgz and not config.train_dir:
        raise UserError("Pass --train_dir (or --input_model_tgz).")
    cli.require_files(
        config.input_data_pattern,
        "'input_data_pattern' was not specified. Unable to continue with inference.",
    )
    if not config.output_file:
        raise UserError("'output_file' was not specified. Unable to continue with inference.")
    output_dir = os.path.dirname(config.output_file)
    if output_dir and not tf.io.gfile.isdir(output_dir):
        raise UserError(
            f"--output_file={config.output_file!r}: directory {output_dir!r} does not exist."
        )


def main(config: InferenceConfig) -> None:
    """Writes predictions with the command-line flags."""
    check_settings(config)
    train_dir = config.train_dir
    if config.input_model_tgz:
        extract_model_tgz(config.input_model_tgz, config.untar_model_dir)
        train_dir = config.untar_model_dir
    model_flags = trained_model.read_model_flags(train_dir, "Did you run eval.py?")
    # The reader only explains bad input; the SavedModel parses the records itself.
    reader = trained_model.reader_for(model_flags)
    model_dir = inference_model_dir(train_dir, model_flags, config.segment_labels)
    if config.segment_labels:
        class_ids = segment_submission.whitelist(config.segment_label_ids_file, reader.num_classes)
    if config.output_model_tgz:
        write_model_tgz(train_dir, model_dir, config.output_model_tgz)
    logging.info("loading saved model: %s", model_dir)
    serve = export_model.load(model_dir)
    if config.segment_labels:
        write_segment_predictions(serve, reader, class_ids, config)
    else:
        write_predictions(
            serve,
            reader,
            config.input_data_pattern,
            config.output_file,
            config.batch_size,
            config.top_k,
        )
    logging.info("Done with inference. The output file was written to %s", config.output_file)


def inference_model_dir(train_dir: str, model_flags: dict, segment_labels: bool) -> str:
    """Returns the SavedModel to run: the per-video one, or with segment_labels the segment one.

    Raises:
      UserError: it is missing, saying what to run to write it.
    """
    model_dir = trained_model.inference_model_path(train_dir, segment_labels)
    if tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    if not segment_labels:
        raise UserError(f"Cannot find {model_dir}. Did you run eval.py?")
    if not model_flags["frame_features"]:
        raise UserError(
            "{segment_labels} needs a frame-level model; this one was trained on "
            "video-level features (model_flags.json: frame_features false).",
            "segment_labels",
        )
    raise UserError(
        f"Cannot find {model_dir}: this model has no segment model. Fine-tune it with "
        f"train.py --segment_labels --train_dir={train_dir} on segment-rated files, then run "
        f"eval.py --segment_labels --train_dir={train_dir} on segment-rated files.",
    )


if __name__ == "__main__":
    cli.run(main, InferenceConfig)
