r"""Prints the GAP of a predictions CSV (inference.py's output) against labelled data.

  python score_predictions.py --predictions_file=/tmp/predictions.csv \
      --data_pattern='/tmp/yt8m_sample/video/test*.tfrecord'

The GAP is the Kaggle metric: the top 20 (class, score) pairs of every video pooled and
ranked, with eval_util's definition. Every video of the data must have a row.
"""

import quiet_tensorflow  # noqa: F401 (first: hides TensorFlow's start-up noise)

# isort: split
import dataclasses

import numpy as np
import pandas as pd
import tensorflow as tf

import cli
import eval_util
import readers
from errors import UserError
from settings import Settings, setting


@dataclasses.dataclass(frozen=True)
class ScoreConfig(Settings):
    """What to score, each a flag of score_predictions.py."""

    predictions_file: str = setting("", "CSV written by inference.py.")
    data_pattern: str = setting("", "Labelled video-level or frame-level TFRecords.")
    frame_features: bool = setting(False, "The data is frame-level SequenceExamples.")
    id_feature: str = setting("id")
    num_classes: int = setting(3862)


def prediction_matrix(predictions_file: str, video_ids: list[str], num_classes: int):
    """Returns float [videos, classes] scores from the CSV, 0 for classes not listed."""
    if not tf.io.gfile.exists(predictions_file):
        raise UserError(f"--predictions_file={predictions_file!r}: no such file.")
    with tf.io.gfile.GFile(predictions_file) as file:
        table = pd.read_csv(file, dtype=str, keep_default_na=False)
    if list(table.columns) != ["VideoId", "LabelConfidencePairs"]:
        raise UserError(f"{predictions_file}: expected the header VideoId,LabelConfidencePairs.")
    rows = dict(zip(table["VideoId"], table["LabelConfidencePairs"]))
    missing = [video_id for video_id in video_ids if video_id not in rows]
    if missing:
        raise UserError(
            f"{predictions_file}: no row for {len(missing)} videos, e.g. {missing[0]!r}."
        )
    scores = np.zeros((len(video_ids), num_classes), np.float64)
    for row, video_id in enumerate(video_ids):
        pairs = rows[video_id].split()
        scores[row, np.array(pairs[0::2], int)] = np.array(pairs[1::2], float)
    return scores


def labels_of(config: ScoreConfig):
    """Returns (video ids, float [videos, classes] labels) of every record."""
    data_pattern = config.data_pattern
    names, sizes = ("rgb", "1024") if config.frame_features else ("mean_rgb", "1024")
    reader = readers.create_reader(
        config.frame_features, names, sizes, config.num_classes, id_feature=config.id_feature
    )
    video_ids, labels = [], []
    with reader.errors_explained(data_pattern):
        for batch in reader.get_dataset(data_pattern, 1024):
            video_ids += [video_id.decode("utf-8") for video_id in batch["video_ids"].numpy()]
            labels.append(batch["labels"].numpy())
    if not video_ids:
        raise UserError(f"--data_pattern={data_pattern!r}: the files hold no records.")
    return video_ids, np.concatenate(labels)


def main(config: ScoreConfig) -> None:
    """Prints the GAP."""
    video_ids, labels = labels_of(config)
    scores = prediction_matrix(config.predictions_file, video_ids, config.num_classes)
    gap = eval_util.calculate_gap(scores, labels, top_k=20)
    print(f"GAP of {config.predictions_file} on {len(video_ids)} videos: {gap:.4f}")


if __name__ == "__main__":
    cli.run(main, ScoreConfig)
