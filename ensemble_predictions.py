r"""Writes the weighted mean of several predictions CSVs (inference.py's output) as one.

  python ensemble_predictions.py --input_files=/tmp/moe.csv,/tmp/dbof.csv \
      --weights=2,1 --output_file=/tmp/ensemble.csv

Per video, class c scores sum_i w_i * s_i(c) / sum_i w_i, where s_i(c) is its score in
file i: 0 where file i does not list c for the video (c was not in that file's top k) or
has no row for the video at all. The output has one row per video of any input file, in
order of first appearance (the first file's rows in their order, then the videos each
later file adds), with its --top_k classes by descending score (equal scores: lower class
id first), in inference.py's format: the header `VideoId,LabelConfidencePairs`, `%i %g`
pairs, ids quoted as CSV quotes them. It is written under a temporary name and renamed
when complete, and score_predictions.py scores it as any inference.py output.
"""

import quiet_tensorflow  # noqa: F401 (first: hides TensorFlow's start-up noise)

# isort: split
import csv
import dataclasses
import io
import math
import os

import numpy as np
import tensorflow as tf
from absl import logging

import atomic_write
import cli
import predictions_csv
from errors import UserError
from settings import Settings, setting

HEADER = predictions_csv.HEADER.split(",")
# inference.py's class ids are int32, and the ensemble's (video, class) keys need bounds.
MAX_CLASS_ID = 2**31 - 1
# Rows written to the output per write call.
ROWS_PER_WRITE = 10000


@dataclasses.dataclass(frozen=True)
class EnsembleConfig(Settings):
    """The ensembling settings, each a flag of ensemble_predictions.py."""

    input_files: list[str] = setting(
        [], "Comma-separated predictions CSVs written by inference.py, to average."
    )
    weights: list[str] = setting(
        [], "Comma-separated weights, one per input file, each 0 or more; default: 1 each."
    )
    output_file: str = setting("", "The CSV file to write the ensemble's predictions to.")
    top_k: int = setting(20, "How many predictions to write per video.")


@dataclasses.dataclass(frozen=True)
class Predictions:
    """The rows of a predictions CSV, their (class, score) pairs concatenated in row order.

    Row i is video_ids[i] with the next pairs_per_video[i] entries of classes and scores.
    """

    video_ids: list[str]
    pairs_per_video: np.ndarray  # int64 [videos]
    classes: np.ndarray  # int64 [pairs]
    scores: np.ndarray  # float64 [pairs]


# ---------------------------------------------------------------------------------------
# Reading.


def read_text(path: str) -> str:
    """Returns a file's text, read through tf.io.gfile.

    Raises:
      UserError: it is missing, unreadable or not UTF-8.
    """
    if not tf.io.gfile.exists(path):
        raise UserError(f"{{input_files}}: {path}: no such file.", "input_files")
    if tf.io.gfile.isdir(path):
        raise UserError(f"{{input_files}}: {path} is a directory.", "input_files")
    try:
        with tf.io.gfile.GFile(path) as file:
            return file.read()
    except tf.errors.OpError as error:
        raise UserError(f"{path}: cannot be read: {error.message}") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (byte {error.start}).") from None


def read_predictions(path: str) -> Predictions:
    """Returns the rows of a predictions CSV in the format inference.py writes.

    Blank lines are skipped, as score_predictions.py skips them.

    Raises:
      UserError: the file is unreadable or malformed, or lists a video twice; the message
        names the file and line.
    """
    rows = csv.reader(io.StringIO(read_text(path), newline=""), strict=True)
    try:
        header = next(rows, None)
        if header != HEADER:
            raise UserError(f"{path}, line 1: expected the header {','.join(HEADER)}.")
        video_ids, pairs_per_video, classes, scores = [], [], [], []
        line_of_video = {}
        for row in rows:
            if not row:
                continue
            where = f"{path}, line {rows.line_num}"
            if len(row) != 2:
                raise UserError(
                    f"{where}: expected 2 fields, {','.join(HEADER)}; found {len(row)}."
                )
            video_id, pairs = row
            if video_id in line_of_video:
                raise UserError(
                    f"{where}: video {video_id!r} again (first on line {line_of_video[video_id]})."
                )
            line_of_video[video_id] = rows.line_num
            row_classes, row_scores = parsed_pairs(pairs, where)
            video_ids.append(video_id)
            pairs_per_video.append(len(row_classes))
            classes += row_classes
            scores += row_scores
    except csv.Error as error:
        raise UserError(f"{path}, line {rows.line_num}: {error}.") from None
    return Predictions(
        video_ids,
        np.array(pairs_per_video, np.int64),
        np.array(classes, np.int64),
        np.array(scores, np.float64),
    )


def parsed_pairs(pairs: str, where: str) -> tuple[list[int], list[float]]:
    """Returns (class ids, scores) of a row's `<class> <score> ...` text.

    Raises:
      UserError: an odd number of values, a value that is not a class id (an integer from
        0 to MAX_CLASS_ID) or a finite score, or a class listed twice; where says the file
        and line.
    """
    values = pairs.split()
    if len(values) % 2:
        raise UserError(f"{where}: expected '<class> <score>' pairs, found {len(values)} values.")
    try:
        classes = list(map(int, values[0::2]))
        scores = list(map(float, values[1::2]))
        valid = (
            0 <= min(classes, default=0)
            and max(classes, default=0) <= MAX_CLASS_ID
            and all(map(math.isfinite, scores))
        )
    except ValueError:
        valid = False
    if not valid:
        raise UserError(
            f"{where}: {first_invalid_pair(values)} is not a class id (an integer from 0 to "
            f"{MAX_CLASS_ID}) and a score (a finite number)."
        )
    if len(set(classes)) != len(classes):
        twice = next(class_id for class_id in classes if classes.count(class_id) > 1)
        raise UserError(f"{where}: class {twice} is listed twice.")
    return classes, scores


def first_invalid_pair(values: list[str]) -> str:
    """Returns the first `<class> <score>` of values that is not a class id and a score."""
    for class_text, score_text in zip(values[0::2], values[1::2]):
        try:
            if 0 <= int(class_text) <= MAX_CLASS_ID and math.isfinite(float(score_text)):
                continue
        except ValueError:
            pass
        return f"{class_text} {score_text}"
    raise AssertionError("every pair is valid")


# ---------------------------------------------------------------------------------------
# The ensemble.


def ensemble(tables: list[Predictions], weights: list[float], top_k: int) -> Predictions:
    """Returns the weighted mean of the tables, each video's top_k classes in order.

    Args:
      tables: the input files' predictions.
      weights: one weight per table, each 0 or more, not all 0.
      top_k: the most classes kept per video.

    Returns:
      One row per video of any table, in order of first appearance; per video the
      classes by descending score, equal scores by ascending class id. A class (or a
      whole video) that a table does not list counts 0 there.
    """
    position = {}
    for table in tables:
        for video_id in table.video_ids:
            position.setdefault(video_id, len(position))
    videos = np.concatenate(
        [
            np.repeat(
                np.array([position[video_id] for video_id in table.video_ids], np.int64),
                table.pairs_per_video,
            )
            for table in tables
        ]
    )
    classes = np.concatenate([table.classes for table in tables])
    weighted = np.concatenate([weight * table.scores for weight, table in zip(weights, tables)])
    if not classes.size:
        return Predictions(list(position), np.zeros(len(position), np.int64), classes, weighted)
    # Sum each (video, class) over the tables; bincount adds in input order, table by table.
    class_slots = int(classes.max()) + 1  # At most 2^31: the keys fit in int64.
    pair_keys, pair_index = np.unique(videos * class_slots + classes, return_inverse=True)
    scores = np.bincount(pair_index, weighted, pair_keys.size) / sum(weights)
    videos, classes = np.divmod(pair_keys, class_slots)
    # By video, then descending score, then class id: the pairs are in (video, class) order,
    # and stable sorts keep it among equals. (np.lexsort measured several times slower.)
    order = np.argsort(-scores, kind="stable")
    order = order[np.argsort(videos[order], kind="stable")]
    videos, classes, scores = videos[order], classes[order], scores[order]
    kept = np.arange(videos.size) - np.searchsorted(videos, videos) < top_k
    return Predictions(
        list(position),
        np.bincount(videos[kept], minlength=len(position)),
        classes[kept],
        scores[kept],
    )


# ---------------------------------------------------------------------------------------
# Writing.


def row_text(classes: list[int], scores: list[float]) -> str:
    """Returns `<class> <score> ...` as inference.py writes it.

    Python's `g` format is C's `%g`, which tf.strings.as_string(shortest=True) uses there.
    """
    return " ".join(f"{class_id} {score:g}" for class_id, score in zip(classes, scores))


def write_predictions(path: str, predictions: Predictions) -> None:
    """Writes predictions as inference.py writes its CSV, atomically."""
    ends = np.cumsum(predictions.pairs_per_video).tolist()
    starts = [0, *ends[:-1]]
    # Python numbers: they format several times faster than NumPy scalars.
    classes, scores = predictions.classes.tolist(), predictions.scores.tolist()
    with (
        atomic_write.replaced_atomically(path) as temporary,
        tf.io.gfile.GFile(temporary, "w") as file,
    ):
        buffer = io.StringIO()
        buffer.write(predictions_csv.HEADER + "\n")
        for row, video_id in enumerate(predictions.video_ids):
            pairs = slice(starts[row], ends[row])
            buffer.write(predictions_csv.row(video_id, row_text(classes[pairs], scores[pairs])))
            if row % ROWS_PER_WRITE == ROWS_PER_WRITE - 1:
                file.write(buffer.getvalue())
                buffer.seek(0)
                buffer.truncate()
        file.write(buffer.getvalue())


# ---------------------------------------------------------------------------------------
# The command line.


def checked_weights(config: EnsembleConfig) -> list[float]:
    """Returns the weights of the input files (1 each by default).

    Raises:
      UserError: not one number per file, a negative or non-finite one, or all 0.
    """
    if not config.weights:
        return [1.0] * len(config.input_files)
    try:
        weights = [float(weight) for weight in config.weights]
    except ValueError:
        raise UserError(
            f"{{weights}}={','.join(config.weights)}: expected comma-separated numbers.",
            "weights",
        ) from None
    if len(weights) != len(config.input_files):
        raise UserError(
            f"{{weights}} has {len(weights)} values for {len(config.input_files)} "
            "{input_files}; give one weight per file.",
            "weights",
            "input_files",
        )
    if not all(math.isfinite(weight) and weight >= 0 for weight in weights):
        raise UserError(
            f"{{weights}}={','.join(config.weights)}: each weight must be a finite number, "
            "0 or more.",
            "weights",
        )
    if sum(weights) == 0:
        raise UserError("{weights} are all 0: give at least one file a positive weight.", "weights")
    return weights


def check_settings(config: EnsembleConfig) -> None:
    """Raises a one-line UserError for missing or contradictory flags."""
    if not config.input_files:
        raise UserError(
            "{input_files} is required: the comma-separated predictions CSVs to average.",
            "input_files",
        )
    if not config.output_file:
        raise UserError("{output_file} is required: the CSV file to write.", "output_file")
    output_dir = os.path.dirname(config.output_file)
    if output_dir and not tf.io.gfile.isdir(output_dir):
        raise UserError(
            f"{{output_file}}={config.output_file!r}: directory {output_dir!r} does not exist.",
            "output_file",
        )


def main(config: EnsembleConfig) -> None:
    """Writes the weighted mean of --input_files to --output_file."""
    check_settings(config)
    weights = checked_weights(config)
    tables = [read_predictions(path) for path in config.input_files]
    result = ensemble(tables, weights, config.top_k)
    write_predictions(config.output_file, result)
    logging.info(
        "Wrote the weighted mean of %d files, %d videos, to %s",
        len(tables),
        len(result.video_ids),
        config.output_file,
    )


if __name__ == "__main__":
    cli.run(main, EnsembleConfig)
