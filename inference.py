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
import io
import os
import posixpath
import tarfile
import time

import tensorflow as tf
from absl import app, flags, logging

import export_model
import readers
import utils

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command-line flags (only when run as a script, as the original did)."""
    utils.define_common_flags(train_dir="", batch_size=512, num_readers=1)
    flags.DEFINE_string(
        "input_data_pattern", "", "File glob of the TFRecord files to predict labels for."
    )
    flags.DEFINE_string(
        "input_model_tgz", "", "A .tgz written by --output_model_tgz, used instead of train_dir."
    )
    flags.DEFINE_string(
        "untar_model_dir", "/tmp/yt8m-model", "Directory --input_model_tgz is unpacked into."
    )
    flags.DEFINE_integer(
        "segment_max_pred", 100000, "Segments kept per class in segment mode (not supported yet)."
    )
    flags.DEFINE_string(
        "segment_label_ids_file",
        "https://raw.githubusercontent.com/google/youtube-8m/master/segment_label_ids.csv",
        "Whitelist of class ids for segment mode (not supported yet).",
    )
    flags.DEFINE_string("output_file", "", "The CSV file to write the predictions to.")
    flags.DEFINE_string(
        "output_model_tgz", "", "If set, also pack the inference model into this .tgz."
    )
    flags.DEFINE_integer("top_k", 20, "How many predictions to write per video (at most 20).")


def inference_model_dir(train_dir: str) -> str:
    """Returns where eval.py wrote the inference model of a training directory."""
    return os.path.join(train_dir, export_model.INFERENCE_MODEL_DIR)


# ---------------------------------------------------------------------------------------
# The model .tgz.


def write_model_tgz(train_dir: str, output_path: str) -> None:
    """Packs inference_model/ and model_flags.json into a .tgz, under a temporary name."""
    temporary = f"{output_path}.tmp{os.getpid()}"
    with (
        tf.io.gfile.GFile(temporary, "wb") as file,
        tarfile.open(fileobj=file, mode="w:gz") as archive,
    ):
        add_to_tar(archive, utils.model_flags_path(train_dir), utils.MODEL_FLAGS_FILE)
        model_dir = inference_model_dir(train_dir)
        for directory, _, names in tf.io.gfile.walk(model_dir):
            relative = os.path.relpath(directory, train_dir)
            for name in names:
                add_to_tar(archive, os.path.join(directory, name), posixpath.join(relative, name))
    tf.io.gfile.rename(temporary, output_path, overwrite=True)
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
        raise utils.UserError(f"--input_model_tgz={tgz_path!r}: no such file.")
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
    temporary = f"{output_file}.tmp{os.getpid()}"
    num_examples = 0
    start = time.time()
    try:
        with tf.io.gfile.GFile(temporary, "w") as file, reader.errors_explained(data_pattern):
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
        tf.io.gfile.rename(temporary, output_file, overwrite=True)
    finally:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)
    return num_examples


def check_flags() -> None:
    """Raises a one-line UserError for missing or contradictory flags."""
    if FLAGS.segment_labels:
        raise utils.UserError("--segment_labels is not supported by this port yet.")
    if FLAGS.input_model_tgz and FLAGS.train_dir:
        raise utils.UserError(
            "You cannot supply --train_dir if supplying --input_model_tgz; the model is "
            "unpacked into --untar_model_dir and read from there."
        )
    if not FLAGS.input_model_tgz and not FLAGS.train_dir:
        raise utils.UserError("Pass --train_dir (or --input_model_tgz).")
    if not FLAGS.input_data_pattern:
        raise utils.UserError(
            "'input_data_pattern' was not specified. Unable to continue with inference."
        )
    if not FLAGS.output_file:
        raise utils.UserError("'output_file' was not specified. Unable to continue with inference.")
    output_dir = os.path.dirname(FLAGS.output_file)
    if output_dir and not tf.io.gfile.isdir(output_dir):
        raise utils.UserError(
            f"--output_file={FLAGS.output_file!r}: directory {output_dir!r} does not exist."
        )
    if not 0 < FLAGS.top_k <= export_model._TOP_PREDICTIONS_IN_OUTPUT:
        raise utils.UserError(
            f"--top_k={FLAGS.top_k}: the inference model gives the top "
            f"{export_model._TOP_PREDICTIONS_IN_OUTPUT} classes; use 1 to 20."
        )


def main(argv):
    """Writes predictions with the command-line flags."""
    del argv
    check_flags()
    train_dir = FLAGS.train_dir
    if FLAGS.input_model_tgz:
        extract_model_tgz(FLAGS.input_model_tgz, FLAGS.untar_model_dir)
        train_dir = FLAGS.untar_model_dir
    model_flags = utils.read_model_flags(train_dir, "Did you run eval.py?")
    model_dir = inference_model_dir(train_dir)
    if not tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        raise utils.UserError(f"Cannot find {model_dir}. Did you run eval.py?")
    if FLAGS.output_model_tgz:
        write_model_tgz(train_dir, FLAGS.output_model_tgz)
    # The reader only explains bad input; the SavedModel parses the records itself.
    reader = readers.create_reader(
        model_flags["frame_features"], model_flags["feature_names"], model_flags["feature_sizes"]
    )
    logging.info("loading saved model: %s", model_dir)
    serve = export_model.load(model_dir)
    write_predictions(
        serve, reader, FLAGS.input_data_pattern, FLAGS.output_file, FLAGS.batch_size, FLAGS.top_k
    )
    logging.info("Done with inference. The output file was written to %s", FLAGS.output_file)


if __name__ == "__main__":
    define_flags()
    app.run(utils.exit_on_user_error(main))
