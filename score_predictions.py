r"""Prints the GAP of a predictions CSV (inference.py's output) against labelled data.

  python score_predictions.py --predictions_file=/tmp/predictions.csv \
      --data_pattern='/tmp/yt8m_sample/video/test*.tfrecord'

The GAP is the Kaggle metric: the top 20 (class, score) pairs of every video pooled and
ranked, with eval_util's definition. Every video of the data must have a row.
"""

import numpy as np
import pandas as pd
import tensorflow as tf
from absl import app, flags

import eval_util
import readers
import utils

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command-line flags."""
    flags.DEFINE_string("predictions_file", "", "CSV written by inference.py.")
    flags.DEFINE_string("data_pattern", "", "Labelled video-level or frame-level TFRecords.")
    flags.DEFINE_bool("frame_features", False, "The data is frame-level SequenceExamples.")
    flags.DEFINE_integer("num_classes", 3862, "Size of the label vocabulary.")


def prediction_matrix(predictions_file: str, video_ids: list[str], num_classes: int):
    """Returns float [videos, classes] scores from the CSV, 0 for classes not listed."""
    if not tf.io.gfile.exists(predictions_file):
        raise utils.UserError(f"--predictions_file={predictions_file!r}: no such file.")
    with tf.io.gfile.GFile(predictions_file) as file:
        table = pd.read_csv(file, dtype=str, keep_default_na=False)
    if list(table.columns) != ["VideoId", "LabelConfidencePairs"]:
        raise utils.UserError(
            f"{predictions_file}: expected the header VideoId,LabelConfidencePairs."
        )
    rows = dict(zip(table["VideoId"], table["LabelConfidencePairs"]))
    missing = [video_id for video_id in video_ids if video_id not in rows]
    if missing:
        raise utils.UserError(
            f"{predictions_file}: no row for {len(missing)} videos, e.g. {missing[0]!r}."
        )
    scores = np.zeros((len(video_ids), num_classes), np.float64)
    for row, video_id in enumerate(video_ids):
        pairs = rows[video_id].split()
        scores[row, np.array(pairs[0::2], int)] = np.array(pairs[1::2], float)
    return scores


def labels_of(data_pattern: str, frame_features: bool, num_classes: int):
    """Returns (video ids, float [videos, classes] labels) of every record."""
    names, sizes = ("rgb", "1024") if frame_features else ("mean_rgb", "1024")
    reader = readers.create_reader(frame_features, names, sizes, num_classes)
    video_ids, labels = [], []
    with reader.errors_explained(data_pattern):
        for batch in reader.get_dataset(data_pattern, 1024):
            video_ids += [video_id.decode("utf-8") for video_id in batch["video_ids"].numpy()]
            labels.append(batch["labels"].numpy())
    if not video_ids:
        raise utils.UserError(f"--data_pattern={data_pattern!r}: the files hold no records.")
    return video_ids, np.concatenate(labels)


def main(argv):
    """Prints the GAP."""
    del argv
    video_ids, labels = labels_of(FLAGS.data_pattern, FLAGS.frame_features, FLAGS.num_classes)
    scores = prediction_matrix(FLAGS.predictions_file, video_ids, FLAGS.num_classes)
    gap = eval_util.calculate_gap(scores, labels, top_k=20)
    print(f"GAP of {FLAGS.predictions_file} on {len(video_ids)} videos: {gap:.4f}")


if __name__ == "__main__":
    define_flags()
    app.run(utils.exit_on_user_error(main))
