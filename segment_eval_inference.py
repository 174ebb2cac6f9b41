r"""Prints the Kaggle 2019 segment metric of a segment submission against rated segments.

  python segment_eval_inference.py \
      --eval_data_pattern='/tmp/yt8m_sample/segment/validate*.tfrecord' \
      --submission_file=/tmp/segments.csv --top_n=100000

The submission (inference.py --segment_labels) ranks, for each class, the segments that
most likely show it. The metric is the mean average precision of the Kaggle 2019 challenge:
for each class, the average precision of its submitted segments in the order listed (the
first top_n of them), where only segments rated for that class count (the others are
dropped from the ranking) and the denominator is the number of positively rated segments
of that class in the whole data, listed or not. The mean is over the submitted classes
that have a positive rating; `Num classes: N | mAP@K: X` is logged and printed.

The rated segments come from the `segment_labels`, `segment_start_times` and
`segment_scores` lists of the 2019 validate/test files; --label_cache keeps them in a
text file to skip reading the TFRecords the next time.

Three bugs of the original are fixed: the submission's header line `Class,Segments` is
skipped (the original crashed on it), the last segment id of each line counts (the
original kept its newline, so it never matched a rated segment), and segment ids are
`<video id>:<start>` with the id decoded as UTF-8 (the original wrote `b'<id>':<start>`,
so on Python 3 no submitted segment matched).
"""

import quiet_tensorflow  # noqa: F401 (first: hides TensorFlow's start-up noise)

# isort: split
import collections
import dataclasses
import re

import numpy as np
import tensorflow as tf
from absl import logging

import atomic_write
import cli
import mean_average_precision_calculator
import readers
import segment_submission
from errors import UserError
from settings import NON_NEGATIVE, Settings, setting

# Records parsed per tf.data batch.
BATCH_SIZE = 1024
# Ratings read between progress log lines, as the original logged.
PROGRESS_EVERY = 5000
# A class id on a submission line: a non-negative decimal integer.
CLASS_ID = re.compile(r"[0-9]+")


@dataclasses.dataclass(frozen=True)
class SegmentEvalConfig(Settings):
    """What to score, each a flag of segment_eval_inference.py."""

    eval_data_pattern: str = setting(
        "",
        "File glob of the segment-rated evaluation data: frame-level SequenceExamples with "
        "the context lists segment_labels, segment_start_times and segment_scores.",
    )
    label_cache: str = setting(
        "",
        "Label cache file: read instead of --eval_data_pattern if it exists, written after "
        "reading the data otherwise. Leave blank for no cache.",
    )
    submission_file: str = setting("", "The segment submission file written by inference.py.")
    top_n: int = setting(
        0, "Keep only the first N segments of each class's list. Use 0 for no cap.", NON_NEGATIVE
    )


class RatingsReader(readers.YT8MFrameFeatureReader):
    """Reads the segment ratings of segment-rated records: their context, not their frames.

    A batch holds one row per rating: `segment_ids` (`<video id>:<start>` bytes), `labels`
    (the class rated) and `scores`. A record must have an id and non-empty, parallel segment
    lists with class ids inside the vocabulary; the reader's explanation machinery names
    the first record that has not, with the same checks in plain Python.
    """

    def __init__(self, num_classes: int = 3862):
        # Frames are not read, so every start time >= 0 is inside the "frames read".
        super().__init__(
            num_classes=num_classes, feature_sizes=[], feature_names=[], max_frames=2**31 - 1
        )

    # No frames to decode: batch the records, then parse each batch's contexts at once.
    parsed_batches = readers.BaseReader.parsed_batches

    def parse_batch(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        """Parses the contexts of a batch of records with one parse call."""
        spec = {name: tf.io.VarLenFeature(dtype) for name, dtype in readers.SEGMENT_FIELDS}
        spec["id"] = tf.io.FixedLenFeature([], tf.string)
        context, _, _ = tf.io.parse_sequence_example(serialized, context_features=spec)
        every_frame_read = tf.fill(tf.shape(context["id"]), self.max_frames)
        starts = context["segment_start_times"]
        checks = [
            *self.segment_list_checks(context, every_frame_read),
            *self.label_id_checks(context["segment_labels"].values),
        ]
        with tf.control_dependencies(checks):
            video_ids = tf.gather(context["id"], starts.indices[:, 0])
        return {
            "segment_ids": readers.segment_ids(video_ids, starts.values),
            "labels": context["segment_labels"].values,
            "scores": context["segment_scores"].values,
        }

    def record_problem(self, record: bytes) -> str | None:
        """Returns what keeps one serialized record's ratings from being read, or None."""
        try:
            example = tf.train.SequenceExample.FromString(record)
        except Exception:  # Protobuf raises its own DecodeError types.
            return "not a serialized tf.train.SequenceExample"
        context = example.context.feature
        if "id" not in context or len(context["id"].bytes_list.value) != 1:
            return "missing the id feature 'id' (one bytes value)"
        problem = self.segment_problem(context, num_frames=self.max_frames)
        # The frame reader's words name its flag; this script always reads the ratings.
        return problem and problem.replace("{segment_labels}", "segment_eval_inference.py")


def rated_labels(config: SegmentEvalConfig) -> dict[tuple[str, int], float]:
    """Returns the score of every rated (segment id, class), from the cache or the data."""
    if config.label_cache and tf.io.gfile.exists(config.label_cache):
        logging.info("Reading cached labels from %s...", config.label_cache)
        return cached_labels(config.label_cache)
    labels = labels_from_records(config.eval_data_pattern)
    if config.label_cache:
        logging.info("Caching labels to %s...", config.label_cache)
        atomic_write.write_text(config.label_cache, label_cache_text(labels))
    return labels


def labels_from_records(data_pattern: str) -> dict[tuple[str, int], float]:
    """Returns the score of every rated (segment id, class) of the segment-rated files.

    A pair rated twice keeps its last score, as in the original.
    """
    cli.require_files(
        data_pattern,
        unspecified="Set --eval_data_pattern (or an existing --label_cache).",
        no_match=f"No file matches --eval_data_pattern={data_pattern!r}.",
    )
    reader = RatingsReader()
    labels = {}
    logging.info("Reading labels from TFRecords...")
    with reader.errors_explained(data_pattern):
        for batch in reader.get_dataset(data_pattern, BATCH_SIZE):
            read_before = len(labels)
            segment_ids = [text.decode("utf-8") for text in batch["segment_ids"].numpy()]
            pairs = zip(segment_ids, batch["labels"].numpy().tolist())
            labels.update(zip(pairs, batch["scores"].numpy().tolist()))
            if len(labels) // PROGRESS_EVERY != read_before // PROGRESS_EVERY:
                logging.info("%d examples processed.", len(labels))
    if not labels:
        raise UserError(f"--eval_data_pattern={data_pattern!r}: the files hold no records.")
    logging.info("Finish reading labels from TFRecords...")
    return labels


def label_cache_text(labels: dict[tuple[str, int], float]) -> str:
    """Returns the label cache: one `<segment_id>,<class>,<score>` line per rated pair."""
    return "".join(
        f"{segment_id},{label},{score}\n" for (segment_id, label), score in labels.items()
    )


def cached_labels(path: str) -> dict[tuple[str, int], float]:
    """Returns the labels of a cache file written by label_cache_text."""
    labels = {}
    with tf.io.gfile.GFile(path) as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                segment_id, label, score = line.strip().rsplit(",", 2)
                labels[(segment_id, int(label))] = float(score)
            except ValueError:
                raise UserError(
                    f"--label_cache={path!r}: line {number}: expected "
                    f"<segment_id>,<class>,<score>, found {line.strip()!r}."
                ) from None
    return labels


def submitted_segments(path: str, top_n: int) -> dict[int, list[str]]:
    """Returns each submitted class's segment ids, in the order listed, the first top_n.

    Args:
      path: a segment submission: the header `Class,Segments`, then lines
        `<class id>,<segment id> <segment id> ...`. Empty lines are skipped; a class
        listed twice keeps its last line, as in the original.
      top_n: segments kept per class, 0 for all.

    Raises:
      UserError: no such file, another header, or a line without an integer class id.
    """
    if not tf.io.gfile.exists(path):
        raise UserError(f"--submission_file={path!r}: no such file.")
    with tf.io.gfile.GFile(path) as file:
        lines = file.read().splitlines()
    header = lines[0].strip() if lines else ""
    if header != segment_submission.HEADER:
        raise UserError(
            f"{path}: expected the header {segment_submission.HEADER} of a segment "
            f"submission, found {header!r}."
        )
    segments = {}
    for number, line in enumerate(lines[1:], start=2):
        line = line.strip()
        if not line:
            continue
        class_text, _, ids_text = line.partition(",")
        if not CLASS_ID.fullmatch(class_text.strip()):
            raise UserError(f"{path}: line {number}: {class_text!r} is not an integer class id.")
        segment_ids = ids_text.split()
        segments[int(class_text)] = segment_ids[:top_n] if top_n > 0 else segment_ids
    return segments


def rated_segments(
    segments: dict[int, list[str]], labels: dict[tuple[str, int], float]
) -> dict[int, list[str]]:
    """Returns each class's submitted segments that were rated for it, in order."""
    return {
        label: [segment_id for segment_id in segment_ids if (segment_id, label) in labels]
        for label, segment_ids in segments.items()
    }


def positive_counts(labels: dict[tuple[str, int], float]) -> collections.Counter:
    """Returns the number of positively rated segments (score > 0) of each class."""
    return collections.Counter(label for (_, label), score in labels.items() if score > 0)


def mean_average_precision(
    ranked: dict[int, list[str]], labels: dict[tuple[str, int], float]
) -> float:
    """Returns the mean over classes with positives of each class's AP of its ranked list.

    A class's list is scored n/n, (n-1)/n, ..., 1/n in its order and its AP divided by all
    its positive ratings. A submitted class without any positive rating is left out of
    the mean (the original raised KeyError on it).

    Args:
      ranked: each submitted class's rated segments, best first (rated_segments).
      labels: the score of every rated (segment id, class).

    Raises:
      UserError: no submitted class has a positive rating, so the mean is undefined.
    """
    classes = sorted(ranked)
    positives = positive_counts(labels)
    predictions = [ranked_scores(len(ranked[label])) for label in classes]
    actuals = [[labels[(segment, label)] for segment in ranked[label]] for label in classes]
    num_positives = [positives.get(label, 0) for label in classes]
    # The calculator needs two classes; an empty one without positives is left out again.
    padding = max(0, 2 - len(classes))
    calculator = mean_average_precision_calculator.MeanAveragePrecisionCalculator(
        len(classes) + padding
    )
    calculator.accumulate(
        predictions + [[]] * padding, actuals + [[]] * padding, num_positives + [0] * padding
    )
    average_precisions = calculator.peek_map_at_n()
    if not average_precisions:
        raise UserError(
            "No submitted class has a positively rated segment in the evaluation data, so "
            "the mAP is undefined."
        )
    return float(np.mean(average_precisions))


def ranked_scores(length: int) -> list[float]:
    """Returns the scores n/n, (n-1)/n, ..., 1/n that rank a list of n in its order."""
    return [rank / length for rank in range(length, 0, -1)]


def main(config: SegmentEvalConfig) -> None:
    """Logs and prints the number of submitted classes and the mAP."""
    if not config.submission_file:
        raise UserError("You must input submission file (--submission_file).")
    segments = submitted_segments(config.submission_file, config.top_n)
    labels = rated_labels(config)
    logging.info("Total rated segments: %d.", len(labels))
    map_at_n = mean_average_precision(rated_segments(segments, labels), labels)
    result = f"Num classes: {len(segments)} | mAP@{config.top_n}: {map_at_n:.6f}"
    logging.info(result)
    print(result)


if __name__ == "__main__":
    cli.run(main, SegmentEvalConfig)
