"""Provides functions to help with evaluating models (pure NumPy).

The metrics are the original's definitions, bit for bit, computed with whole-batch NumPy
operations instead of Python loops over videos:

* The top-k classes of every video come from `np.argpartition(..., axis=1)`, in row
  blocks on parallel threads. It selects the same classes as the original's per-row
  calls, which matters when scores tie at the k-th place; the order within a row never
  matters (the original regroups the items class by class in video order, as here).
* EvaluationMetrics.accumulate's hit at one reads argmax's class from the top k.
* PERR needs, per video, the n highest-scored classes (n = its number of labels). With
  0/1 labels, the count of positives among them follows from the video's top-k scores
  unless a positive and a negative tie at the n-th score. Only those videos, and videos
  with more than k labels, go through argpartition as in the original.
* Labels are read as float64 (the project's decision; the original's float32 labels
  make its printed GAP drift by ~1e-4). Sums are done in the original's order where the
  order could change the result.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

import average_precision_calculator as ap_calculator
import mean_average_precision_calculator as map_calculator


def flatten(l):  # noqa: E741 (the original's name and signature)
    """Merges a list of lists into a single list."""
    return [item for sublist in l for item in sublist]


def calculate_hit_at_one(predictions, actuals) -> float:
    """Performs a local (numpy) calculation of the hit at one.

    Args:
      predictions: Matrix containing the outputs of the model. Dimensions are 'batch' x
        'num_classes'.
      actuals: Matrix containing the ground truth labels. Dimensions are 'batch' x
        'num_classes'.

    Returns:
      float: The average hit at one across the entire batch.
    """
    predictions, actuals = np.asarray(predictions), np.asarray(actuals)
    top_prediction = np.argmax(predictions, 1)
    hits = actuals[np.arange(actuals.shape[0]), top_prediction].astype(np.float64)
    return np.average(hits)


def calculate_precision_at_equal_recall_rate(predictions, actuals) -> float:
    """Performs a local (numpy) calculation of the PERR.

    Args:
      predictions: Matrix containing the outputs of the model. Dimensions are 'batch' x
        'num_classes'.
      actuals: Matrix containing the ground truth labels. Dimensions are 'batch' x
        'num_classes'.

    Returns:
      float: The average precision at equal recall rate across the entire batch.
    """
    predictions, actuals = np.asarray(predictions), np.asarray(actuals)
    return _precision_at_equal_recall_rate(predictions, _scan_batch(predictions, actuals, 20))


def calculate_gap(predictions, actuals, top_k: int = 20) -> float:
    """Performs a local (numpy) calculation of the global average precision.

    Only the top_k predictions are taken for each of the videos.

    Args:
      predictions: Matrix containing the outputs of the model. Dimensions are 'batch' x
        'num_classes'.
      actuals: Matrix containing the ground truth labels. Dimensions are 'batch' x
        'num_classes'.
      top_k: How many predictions to use per video.

    Returns:
      float: The global average precision.

    Raises:
      ValueError: top_k is not a positive integer.
    """
    predictions, actuals = np.asarray(predictions), np.asarray(actuals)
    scan = _scan_batch(predictions, actuals, top_k)
    gap_calculator = ap_calculator.AveragePrecisionCalculator()
    gap_calculator.accumulate(
        scan.predictions, scan.labels, _sequential_total(scan.class_positives)
    )
    return gap_calculator.peek_ap_at_n()


def top_k_by_class(predictions, labels, k: int = 20):
    """Extracts the top k predictions for each video, sorted by class.

    Args:
      predictions: A numpy matrix containing the outputs of the model. Dimensions are
        'batch' x 'num_classes'.
      labels: A numpy matrix containing the ground truth labels. Dimensions are 'batch'
        x 'num_classes'.
      k: the top k non-zero entries to preserve in each prediction.

    Returns:
      A tuple (predictions, labels, true_positives). 'predictions' and 'labels' are
      lists of lists of floats. 'true_positives' is a list of scalars. The length of the
      lists are equal to the number of classes. The entries in the predictions variable
      are probability predictions, and the corresponding entries in the labels variable
      are the ground truth for those predictions. The entries in 'true_positives' are
      the number of true positives for each class in the ground truth.

    Raises:
      ValueError: An error occurred when the k is not a positive integer.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    scan = _scan_batch(predictions, labels, k)
    boundaries = np.cumsum(np.bincount(scan.class_ids, minlength=predictions.shape[1]))[:-1]
    out_predictions = [part.tolist() for part in np.split(scan.predictions, boundaries)]
    out_labels = [part.tolist() for part in np.split(scan.labels, boundaries)]
    out_true_positives = scan.class_positives.tolist()
    return out_predictions, out_labels, out_true_positives


class EvaluationMetrics:
    """A class to store the evaluation metrics."""

    def __init__(self, num_class: int, top_k: int, top_n: int | None):
        """Constructs an EvaluationMetrics object to store the evaluation metrics.

        Args:
          num_class: A positive integer specifying the number of classes.
          top_k: A positive integer specifying how many predictions are considered per
            video.
          top_n: A positive integer specifying the average precision at n, or None to
            use all provided data points.

        Raises:
          ValueError: An error occurred when MeanAveragePrecisionCalculator cannot be
            constructed.
        """
        self.map_calculator = map_calculator.MeanAveragePrecisionCalculator(num_class, top_n=top_n)
        self.global_ap_calculator = ap_calculator.AveragePrecisionCalculator()
        self.top_k = top_k
        self.clear()  # sets the sums and num_examples to 0

    def accumulate(self, predictions, labels, loss) -> dict:
        """Accumulates the metrics calculated locally for this mini-batch.

        Only the top_k entries of each video are kept, never the whole matrix.

        Args:
          predictions: A numpy matrix containing the outputs of the model. Dimensions
            are 'batch' x 'num_classes'.
          labels: A numpy matrix containing the ground truth labels. Dimensions are
            'batch' x 'num_classes'.
          loss: A numpy array containing the loss for each sample.

        Returns:
          dictionary: A dictionary storing the metrics for the mini-batch.

        Raises:
          ValueError: An error occurred when the shape of predictions and actuals does
            not match, or top_k is not a positive integer.
        """
        predictions, labels = np.asarray(predictions), np.asarray(labels)
        if predictions.shape != labels.shape:
            raise ValueError("the shape of predictions and actuals does not match.")
        batch_size = labels.shape[0]
        scan = _scan_batch(predictions, labels, self.top_k)
        mean_hit_at_one = np.average(_hits_at_one(predictions, scan))
        mean_perr = _precision_at_equal_recall_rate(predictions, scan)
        mean_loss = np.mean(np.asarray(loss, dtype=np.float64))
        self.map_calculator.accumulate_grouped(
            scan.class_ids, scan.predictions, scan.labels, scan.class_positives
        )
        self.global_ap_calculator.accumulate(
            scan.predictions, scan.labels, _sequential_total(scan.class_positives)
        )
        self.num_examples += batch_size
        self.sum_hit_at_one += mean_hit_at_one * batch_size
        self.sum_perr += mean_perr * batch_size
        self.sum_loss += mean_loss * batch_size
        return {"hit_at_one": mean_hit_at_one, "perr": mean_perr, "loss": mean_loss}

    def get(self) -> dict:
        """Calculates the evaluation metrics for the whole epoch.

        Raises:
          ValueError: If no examples were accumulated.

        Returns:
          dictionary: a dictionary storing the evaluation metrics for the epoch. The
            dictionary has the fields: avg_hit_at_one, avg_perr, avg_loss, aps (the list
            of per-class APs) and gap.
        """
        if self.num_examples <= 0:
            raise ValueError("total_sample must be positive.")
        return {
            "avg_hit_at_one": self.sum_hit_at_one / self.num_examples,
            "avg_perr": self.sum_perr / self.num_examples,
            "avg_loss": self.sum_loss / self.num_examples,
            "aps": self.map_calculator.peek_map_at_n(),
            "gap": self.global_ap_calculator.peek_ap_at_n(),
        }

    def clear(self) -> None:
        """Clears the evaluation metrics and resets the EvaluationMetrics object."""
        self.sum_hit_at_one = 0.0
        self.sum_perr = 0.0
        self.sum_loss = 0.0
        self.map_calculator.clear()
        self.global_ap_calculator.clear()
        self.num_examples = 0


# Rows per block of _scan_rows: argpartition's [rows, classes] index matrix stays in cache.
_BLOCK_ROWS = 64
# Threads of _scan_rows, one per CPU this process may run on.
_THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


class _BatchScan(NamedTuple):
    """What the metrics read from a batch (see _scan_batch).

    Attributes:
      class_ids, predictions, labels: the top-k entries (float64 scores and labels),
        grouped by class and, within a class, in video order (as top_k_by_class).
      top_classes, top_scores: [batch, k], each video's top-k (any order within a row).
      label_matrix: the labels as given; binary: whether every label is 0 or 1.
      rows, columns: the (video, class) of every positive, if binary.
      labels_per_video: the original's int(np.sum(labels[row])) of every video.
      class_positives: float64, the original's np.sum(labels[:, c]) of every class.
    """

    class_ids: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    top_classes: np.ndarray
    top_scores: np.ndarray
    label_matrix: np.ndarray
    binary: bool
    rows: np.ndarray
    columns: np.ndarray
    labels_per_video: np.ndarray
    class_positives: np.ndarray


def _scan_batch(predictions: np.ndarray, labels: np.ndarray, k: int) -> _BatchScan:
    """Reads a batch once; k is capped at the number of classes (ValueError if k <= 0).

    0/1 labels (the YouTube-8M case) are read sparsely: every count is an exact small
    integer, whatever the order of summation. Other labels are summed in float64
    exactly as the original's np.sum sums a row or a column (pairwise).
    """
    if k <= 0:
        raise ValueError("k must be a positive integer.")
    predictions, labels = np.ascontiguousarray(predictions), np.ascontiguousarray(labels)
    batch_size, num_classes = predictions.shape
    k = min(k, num_classes)
    top_classes, nonzero = _scan_rows(predictions, labels, k)
    # A stable sort by class keeps each class's entries in video order.
    by_class = np.argsort(
        top_classes.ravel().astype(np.min_scalar_type(num_classes)), kind="stable"
    )
    flat_positions = top_classes + (np.arange(batch_size) * num_classes)[:, None]
    top_scores = predictions.reshape(-1).take(flat_positions)  # faster than take_along_axis
    top_labels = labels.reshape(-1).take(flat_positions).ravel()
    items = (
        top_classes.ravel()[by_class],
        top_scores.ravel()[by_class].astype(np.float64),
        top_labels[by_class].astype(np.float64),
        top_classes,
        top_scores,
        labels,
    )
    if np.all(labels.ravel()[nonzero] == 1):
        rows, columns = np.divmod(nonzero, num_classes)
        per_video = np.bincount(rows, minlength=batch_size)
        per_class = np.bincount(columns, minlength=num_classes).astype(np.float64)
        return _BatchScan(*items, True, rows, columns, per_video, per_class)
    as_float64 = labels.astype(np.float64)
    per_video = np.sum(as_float64, axis=1).astype(np.int64)
    per_class = np.sum(np.ascontiguousarray(as_float64.T), axis=1)
    empty = np.zeros(0, dtype=np.int64)
    return _BatchScan(*items, False, empty, empty, per_video, per_class)


def _scan_rows(predictions: np.ndarray, labels: np.ndarray, k: int):
    """(top_classes, nonzero): what needs each whole row, read in parallel row blocks.

    top_classes[row] is np.argpartition(predictions[row], -k)[-k:]; nonzero holds the
    flat positions of the nonzero labels. NumPy releases the GIL in these calls, and
    each block is computed as it would be alone, so the threads do not change results.
    """
    top_classes = np.empty((len(predictions), k), dtype=np.intp)

    def scan_block(start: int) -> np.ndarray:
        rows = slice(start, start + _BLOCK_ROWS)
        top_classes[rows] = np.argpartition(predictions[rows], -k, axis=1)[:, -k:]
        return np.flatnonzero(labels[rows] != 0) + start * labels.shape[1]  # bool: fast

    with ThreadPoolExecutor(_THREADS) as pool:
        nonzero = list(pool.map(scan_block, range(0, len(predictions), _BLOCK_ROWS)))
    return top_classes, np.concatenate(nonzero or [np.zeros(0, dtype=np.intp)])


def _sequential_total(values: np.ndarray) -> float:
    """sum(values) as Python's built-in adds a list of NumPy floats: left to right."""
    return float(np.cumsum(values)[-1]) if len(values) else 0


def _hits_at_one(predictions: np.ndarray, scan: _BatchScan) -> np.ndarray:
    """Each video's label at np.argmax(scores), found among its top-k classes.

    argmax takes the lowest class of those tied at the maximum. They are all among the
    top k unless the maximum fills it; only such rows are read again.
    """
    at_maximum = scan.top_scores == scan.top_scores.max(axis=1, keepdims=True)
    first = np.where(at_maximum, scan.top_classes, predictions.shape[1]).min(axis=1)
    full = np.flatnonzero(at_maximum.all(axis=1))
    first[full] = np.argmax(predictions[full], axis=1)
    return scan.label_matrix[np.arange(len(first)), first].astype(np.float64)


def _precision_at_equal_recall_rate(predictions: np.ndarray, scan: _BatchScan) -> float:
    """The original's PERR of a batch: the mean over videos of each video's precision."""
    num_videos = predictions.shape[0]
    precisions = np.zeros(num_videos, dtype=np.float64)
    if scan.binary:
        exact_rows = _binary_precisions(predictions, scan, precisions)
    else:
        exact_rows = np.arange(num_videos)
    if len(exact_rows):
        precisions[exact_rows] = _precisions_like_original(predictions, scan, exact_rows)
    aggregated_precision = float(np.cumsum(precisions)[-1]) if num_videos else 0.0
    return aggregated_precision / num_videos


def _binary_precisions(predictions: np.ndarray, scan: _BatchScan, out: np.ndarray) -> np.ndarray:
    """Fills `out` with the PERR of the videos that argpartition's tie choice can't change.

    With 0/1 labels, a video with n labels takes its n highest scores: every score above
    t (the n-th highest) and some of the scores equal to t. Positives above t (and > 0)
    all count. The tied ones add nothing if t <= 0 or none of them is positive, and all
    the free places if every score equal to t is a positive (known when t is above the
    k-th score, so that they are all among the top k). Returns the other videos (mixed
    ties at the n-th place, or more labels than k), for the original's argpartition.
    """
    width = scan.top_scores.shape[1]
    num_labels = scan.labels_per_video
    decidable = np.flatnonzero((num_labels > 0) & (num_labels <= width))
    n = num_labels[decidable]
    scores = -np.sort(-scan.top_scores[decidable], axis=1)  # descending
    threshold = scores[np.arange(len(decidable)), n - 1]
    above = (scores > threshold[:, None]).sum(axis=1)
    tied = (scores == threshold[:, None]).sum(axis=1)
    row_threshold = np.zeros(len(num_labels), dtype=predictions.dtype)
    row_threshold[decidable] = threshold
    positive_scores = predictions[scan.rows, scan.columns]
    positive_threshold = row_threshold[scan.rows]
    counts_above = np.bincount(
        scan.rows,
        weights=(positive_scores > positive_threshold) & (positive_scores > 0),
        minlength=len(num_labels),
    )[decidable]
    positives_tied = np.bincount(
        scan.rows, weights=positive_scores == positive_threshold, minlength=len(num_labels)
    )[decidable]
    ties_add_nothing = (threshold <= 0) | (positives_tied == 0)
    ties_all_positive = (threshold > scores[:, -1]) & (positives_tied == tied)
    decided = ties_add_nothing | ties_all_positive
    counts = counts_above + np.where(ties_add_nothing, 0, n - above)
    out[decidable[decided]] = counts[decided] / n[decided]
    return np.concatenate((decidable[~decided], np.flatnonzero(num_labels > width)))


def _precisions_like_original(predictions, scan: _BatchScan, rows) -> np.ndarray:
    """The original's per-video PERR loop for the given videos, grouped by label count.

    Each group runs argpartition with the same kth as the original's per-row calls,
    and the labels of the chosen classes are added in the order argpartition returns
    them (np.cumsum is sequential).
    """
    precisions = np.zeros(len(rows), dtype=np.float64)
    num_labels = scan.labels_per_video[rows]
    for count in np.unique(num_labels).tolist():
        members = np.flatnonzero(num_labels == count)
        videos = rows[members]
        video_predictions = predictions[videos]
        top_indices = np.argpartition(video_predictions, -count, axis=1)[:, -count:]
        if top_indices.shape[1] == 0:
            raise ZeroDivisionError("float division by zero")
        scores = np.take_along_axis(video_predictions, top_indices, axis=1)
        chosen_labels = scan.label_matrix[videos[:, None], top_indices]
        added = np.where(scores > 0, chosen_labels.astype(np.float64), 0.0)
        precisions[members] = np.cumsum(added, axis=1)[:, -1] / top_indices.shape[1]
    return precisions
