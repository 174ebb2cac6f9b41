r"""Writes Kaggle-style predictions (top 20 classes per video) from the inference model.

  python inference.py --train_dir=/tmp/yt8m_model \
      --input_data_pattern='/tmp/yt8m_sample/video/test*.tfrecord' \
      --output_file=/tmp/predictions.csv

Runs <train_dir>/inference_model, the SavedModel that eval.py writes, over serialized
records in whole batches; no model code is needed. The CSV has the header
`VideoId,LabelConfidencePairs` and one row per input video, in input order:
`<id>,<class> <score> <class> <score> ...`, classes by descending score. The file is
written under a temporary name and renamed when complete.

--output_model_tgz packs the inference model with model_flags.json (e.g. for upload);
--input_model_tgz runs such an archive instead of a training directory.
"""

import csv
import dataclasses
import io
import os
import posixpath
import tarfile
import time

import tensorflow as tf
from absl import logging

import atomic_write
import cli
import export_model
import readers
import trained_model
from errors import UserError
from settings import setting


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
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
    top_k: int = setting(20, "How many predictions to write per video (at most 20).")
    segment_labels: bool = setting(False)
    segment_max_pred: int = setting(
        100000, "Segments kept per class in segment mode (not supported yet)."
    )
    segment_label_ids_file: str = setting(
        "https://raw.githubusercontent.com/google/youtube-8m/master/segment_label_ids.csv",
        "Whitelist of class ids for segment mode (not supported yet).",
    )


# ---------------------------------------------------------------------------------------
# The model .tgz.


def write_model_tgz(train_dir: str, output_path: str) -> None:
    """Packs inference_model/ and model_flags.json into a .tgz, written atomically."""
    with (
        atomic_write.replaced_atomically(output_path) as temporary,
        tf.io.gfile.GFile(temporary, "wb") as file,
        tarfile.open(fileobj=file, mode="w:gz") as archive,
    ):
        model_flags = trained_model.model_flags_path(train_dir)
        add_to_tar(archive, model_flags, trained_model.MODEL_FLAGS_FILE)
        model_dir = trained_model.inference_model_path(train_dir)
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
        "plain_ids": tf.strings.regex_full_match(video_ids, '[^,"\r\n]*'),
    }


def write_batch(file, batch: dict) -> None:
    """Appends one formatted batch to the CSV, quoting the ids that need it."""
    if batch["plain_ids"].numpy().all():
        file.write(b"\n".join(batch["lines"].numpy()).decode("utf-8") + "\n")
        return
    writer = csv.writer(file, lineterminator="\n")
    for video_id, pairs in zip(batch["video_ids"].numpy(), batch["pairs"].numpy()):
        writer.writerow([video_id.decode("utf-8"), pairs.decode("utf-8")])


def write_predictions(
    serve,
    reader: readers.BaseReader,
    data_pattern: str,
    output_file: str,
    batch_size: int,
    top_k: int,
) -> int:
    """Runs the model over every record once, in input order, and writes the CSV.

    The model and the formatting run inside the tf.data pipeline, so they overlap with
    writing the previous batch.

    Returns:
      The number of videos written.
    """
    records = readers.serialized_records(
        readers.list_files(data_pattern), batch_size, training=False, num_epochs=1, num_readers=1
    )
    batches = (
        records.batch(batch_size)
        .map(
            lambda serialized: formatted_batch(serve(example_bytes=serialized), top_k),
            num_parallel_calls=2,
        )
        .prefetch(2)
    )
    num_examples = 0
    start = time.time()
    with (
        atomic_write.replaced_atomically(output_file) as temporary,
        tf.io.gfile.GFile(temporary, "w") as file,
        reader.errors_explained(data_pattern),
    ):
        file.write("VideoId,LabelConfidencePairs\n")
        for batch in batches:
            write_batch(file, batch)
            num_examples += int(batch["lines"].shape[0])
            elapsed = time.time() - start
            logging.info(
                "num examples processed: %d elapsed seconds: %.2f examples/sec: %.2f",
                num_examples,
                elapsed,
                num_examples / max(elapsed, 1e-9),
            )
    return num_examples


def check_settings(config: InferenceConfig) -> None:
    """Raises a one-line UserError for missing or contradictory flags."""
    cli.refuse_segment_labels(config.segment_labels)
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
    if not 0 < config.top_k <= export_model.TOP_PREDICTIONS_IN_OUTPUT:
        raise UserError(
            f"--top_k={config.top_k}: the inference model gives the top "
            f"{export_model.TOP_PREDICTIONS_IN_OUTPUT} classes; use 1 to 20."
        )


def main(config: InferenceConfig) -> None:
    """Writes predictions with the command-line flags."""
    check_settings(config)
    train_dir = config.train_dir
    if config.input_model_tgz:
        extract_model_tgz(config.input_model_tgz, config.untar_model_dir)
        train_dir = config.untar_model_dir
    model_flags = trained_model.read_model_flags(train_dir, "Did you run eval.py?")
    model_dir = trained_model.inference_model_path(train_dir)
    if not tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        raise UserError(f"Cannot find {model_dir}. Did you run eval.py?")
    if config.output_model_tgz:
        write_model_tgz(train_dir, config.output_model_tgz)
    # The reader only explains bad input; the SavedModel parses the records itself.
    reader = trained_model.reader_for(model_flags)
    logging.info("loading saved model: %s", model_dir)
    serve = export_model.load(model_dir)
    write_predictions(
        serve,
        reader,
        config.input_data_pattern,
        config.output_file,
        config.batch_size,
        config.top_k,
    )
    logging.info("Done with inference. The output file was written to %s", config.output_file)


if __name__ == "__main__":
    cli.run(main, InferenceConfig)
