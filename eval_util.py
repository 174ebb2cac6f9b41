"""Provides functions to help with evaluating models (pure NumPy).

The metrics are the original's definitions, bit for bit, computed with whole-batch NumPy
operations instead of Python loops over videos:

* The top-k classes of every video come from `np.argpartition(..., axis=1)`. It selects
  the same classes as the original's per-row calls, which matters when scores tie at
  the k-th place. The order argpartition returns within a row never matters: the
  original regroups the items class by class in video order, and so does this module.
* Work that reads each video's row on its own (argpartition, argmax, gathers, the scan
  of the labels) is cut into chunks of consecutive rows run at the same time by a small
  thread pool; NumPy releases the GIL inside these calls. Rows are independent, so the
  results are the same arrays, element for element, as from one call over the batch.
* PERR needs, per video, the n highest-scored classes (n = its number of labels). With
  0/1 labels, the count of positives among them follows from the video's top-k scores
  unless a positive and a negative tie at the n-th score. Only those videos, and videos
  with more than k labels, go through argpartition as in the original.
* Labels are read as float64 (the project's decision; the original's float32 labels
  make its printed GAP drift by ~1e-4). Sums are done in the original's order where the
  order could change the result.
"""

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, TypeVar

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
    return _hit_at_one(predictions, actuals)


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
    items, labels, _ = _scan_batch(predictions, actuals, 20)
    return _precision_at_equal_recall_rate(predictions, labels, items.top_scores)


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
    items, labels, _ = _scan_batch(predictions, actuals, top_k)
    gap_calculator = ap_calculator.AveragePrecisionCalculator()
    gap_calculator.accumulate(
        items.predictions, items.labels, _sequential_total(labels.class_positives)
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
    items, batch_labels, _ = _scan_batch(predictions, labels, k)
    num_classes = predictions.shape[1]
    boundaries = np.cumsum(np.bincount(items.class_ids, minlength=num_classes))[:-1]
    out_predictions = [part.tolist() for part in np.split(items.predictions, boundaries)]
    out_labels = [part.tolist() for part in np.split(items.labels, boundaries)]
    out_true_positives = batch_labels.class_positives.tolist()
    return out_predictions, out_labels, out_true_positives


def top_k_triplets(predictions, labels, k: int = 20):
    """Gets the top_k of a 1-d numpy array.

    Args:
      predictions: A 1-d numpy array of the model's scores for one video.
      labels: A 1-d numpy array of its ground truth labels.
      k: The number of top predictions to pick.

    Returns:
      A sparse list of tuples in (class, prediction, label) format.
    """
    m = len(predictions)
    k = min(k, m)
    indices = np.argpartition(predictions, -k)[-k:]
    return [(index, predictions[index], labels[index]) for index in indices]


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
        self.sum_hit_at_one = 0.0
        self.sum_perr = 0.0
        self.sum_loss = 0.0
        self.map_calculator = map_calculator.MeanAveragePrecisionCalculator(num_class, top_n=top_n)
        self.global_ap_calculator = ap_calculator.AveragePrecisionCalculator()
        self.top_k = top_k
        self.num_examples = 0

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
        items, batch_labels, top_prediction_labels = _scan_batch(predictions, labels, self.top_k)
        mean_hit_at_one = np.average(top_prediction_labels.astype(np.float64))
        mean_perr = _precision_at_equal_recall_rate(predictions, batch_labels, items.top_scores)
        mean_loss = np.mean(np.asarray(loss, dtype=np.float64))

        self.map_calculator._accumulate_grouped(
            items.class_ids, items.predictions, items.labels, batch_labels.class_positives
        )
        self.global_ap_calculator.accumulate(
            items.predictions, items.labels, _sequential_total(batch_labels.class_positives)
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
        avg_hit_at_one = self.sum_hit_at_one / self.num_examples
        avg_perr = self.sum_perr / self.num_examples
        avg_loss = self.sum_loss / self.num_examples

        aps = self.map_calculator.peek_map_at_n()
        gap = self.global_ap_calculator.peek_ap_at_n()

        return {
            "avg_hit_at_one": avg_hit_at_one,
            "avg_perr": avg_perr,
            "avg_loss": avg_loss,
            "aps": aps,
            "gap": gap,
        }

    def clear(self) -> None:
        """Clears the evaluation metrics and resets the EvaluationMetrics object."""
        self.sum_hit_at_one = 0.0
        self.sum_perr = 0.0
        self.sum_loss = 0.0
        self.map_calculator.clear()
        self.global_ap_calculator.clear()
        self.num_examples = 0


# ---------------------------------------------------------------------------------------
# Batch building blocks.
# ---------------------------------------------------------------------------------------


class _TopKItems(NamedTuple):
    """The top-k entries of a batch, in the order the original feeds its calculators.

    Attributes:
      class_ids: the class of each entry; entries are grouped by class (ascending) and,
        within a class, in video order (the original's flatten(top_k_by_class(...))).
      predictions: float64 scores of the entries.
      labels: float64 labels of the entries.
      top_scores: [batch, k] scores of each video's top-k (any order within a row).
    """

    class_ids: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    top_scores: np.ndarray


class _BatchLabels(NamedTuple):
    """The labels of a batch, summarised.

    Attributes:
      labels: the labels matrix as given.
      binary: whether every label is 0 or 1.
      rows, columns: the (video, class) of every positive, if binary.
      labels_per_video: the original's int(np.sum(labels[row])) of every video.
      class_positives: float64, the original's np.sum(labels[:, c]) of every class.
    """

    labels: np.ndarray
    binary: bool
    rows: np.ndarray
    columns: np.ndarray
    labels_per_video: np.ndarray
    class_positives: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, nonzero: np.ndarray, only_ones: bool) -> "_BatchLabels":
        """Summarises a [batch, classes] labels matrix.

        0/1 labels (the YouTube-8M case) are read sparsely: every count is an exact
        small integer, whatever the order of summation. Other labels are summed in
        float64 exactly as np.sum sums a row or a column (pairwise).

        Args:
          labels: the labels matrix.
          nonzero: the flat positions of its nonzero labels, ascending.
          only_ones: whether all of those labels are 1.
        """
        batch_size, num_classes = labels.shape
        if only_ones:
            rows, columns = np.divmod(nonzero, num_classes)
            per_video = np.bincount(rows, minlength=batch_size)
            per_class = np.bincount(columns, minlength=num_classes).astype(np.float64)
            return cls(labels, True, rows, columns, per_video, per_class)
        as_float64 = labels.astype(np.float64)
        per_video = np.sum(as_float64, axis=1).astype(np.int64)
        per_class = np.sum(np.ascontiguousarray(as_float64.T), axis=1)
        empty = np.zeros(0, dtype=np.int64)
        return cls(labels, False, empty, empty, per_video, per_class)


class _RowScan(NamedTuple):
    """What one pass over some consecutive rows of a batch finds (see _scan_rows).

    Attributes:
      top_classes: [rows, k] argpartition's top-k classes of each row.
      top_scores: [rows, k] their scores.
      top_labels: [rows, k] their labels.
      top_prediction_labels: [rows] the label of each row's first highest score.
      nonzero: flat positions, in the whole batch, of the rows' nonzero labels.
      only_ones: whether all of those labels are 1.
    """

    top_classes: np.ndarray
    top_scores: np.ndarray
    top_labels: np.ndarray
    top_prediction_labels: np.ndarray
    nonzero: np.ndarray
    only_ones: bool

    @classmethod
    def join(cls, chunks: list["_RowScan"]) -> "_RowScan":
        """Puts the scans of consecutive row chunks back together, in row order."""
        if len(chunks) == 1:
            return chunks[0]
        array_fields = cls._fields[:-1]  # all but only_ones
        arrays = (
            np.concatenate([getattr(chunk, field) for chunk in chunks]) for field in array_fields
        )
        return cls(*arrays, only_ones=all(chunk.only_ones for chunk in chunks))


def _scan_rows(
    predictions: np.ndarray, labels: np.ndarray, k: int, start: int, stop: int
) -> _RowScan:
    """Everything the metrics read from rows start..stop-1 of a batch, row by row."""
    row_predictions, row_labels = predictions[start:stop], labels[start:stop]
    # argpartition returns a [rows, classes] index matrix; a few rows at a time it stays
    # in cache instead of taking fresh memory (31 MB for 1,024 x 3,862).
    top_classes = np.empty((stop - start, k), dtype=np.intp)
    for block in range(0, stop - start, _ARGPARTITION_ROWS):
        block_predictions = row_predictions[block : block + _ARGPARTITION_ROWS]
        top_classes[block : block + _ARGPARTITION_ROWS] = np.argpartition(
            block_predictions, -k, axis=1
        )[:, -k:]
    top_scores = np.take_along_axis(row_predictions, top_classes, axis=1)
    top_labels = np.take_along_axis(row_labels, top_classes, axis=1)
    row_numbers = np.arange(stop - start)
    top_prediction_labels = row_labels[row_numbers, np.argmax(row_predictions, axis=1)]
    nonzero = np.flatnonzero(row_labels != 0)
    only_ones = bool(np.all(row_labels.ravel()[nonzero] == 1))
    return _RowScan(
        top_classes,
        top_scores,
        top_labels,
        top_prediction_labels,
        nonzero + start * labels.shape[1],
        only_ones,
    )


def _scan_batch(
    predictions: np.ndarray, labels: np.ndarray, k: int
) -> tuple[_TopKItems, _BatchLabels, np.ndarray]:
    """Reads a batch once, in parallel row chunks.

    Args:
      predictions: [batch, classes] scores.
      labels: [batch, classes] labels.
      k: how many top-scored classes to keep per video (capped at the classes).

    Returns:
      (items, labels, top_prediction_labels): the top-k entries grouped by class as the
      original groups them, the summarised labels, and the label of each video's first
      highest score (the original's hit at one).

    Raises:
      ValueError: k is not a positive integer.
    """
    if k <= 0:
        raise ValueError("k must be a positive integer.")
    predictions, labels = np.ascontiguousarray(predictions), np.ascontiguousarray(labels)
    batch_size, num_classes = predictions.shape
    k = min(k, num_classes)
    chunks = _map_row_chunks(
        lambda start, stop: _scan_rows(predictions, labels, k, start, stop),
        batch_size,
        num_classes,
    )
    scan = _RowScan.join(chunks)
    batch_labels = _BatchLabels.of(labels, scan.nonzero, scan.only_ones)
    # Sort (class, position in the [batch, k] matrix) packed in one int64: by class,
    # then video, since positions grow with the video.
    position_bits = max(int(batch_size * k - 1).bit_length(), 1)
    keys = np.sort(
        (scan.top_classes.ravel().astype(np.int64) << position_bits)
        | np.arange(scan.top_classes.size)
    )
    positions = keys & ((1 << position_bits) - 1)
    items = _TopKItems(
        class_ids=keys >> position_bits,
        predictions=scan.top_scores.ravel()[positions].astype(np.float64),
        labels=scan.top_labels.ravel()[positions].astype(np.float64),
        top_scores=scan.top_scores,
    )
    return items, batch_labels, scan.top_prediction_labels


def _sequential_total(values: np.ndarray) -> float:
    """sum(values) as Python's built-in adds a list of NumPy floats: left to right."""
    return float(np.cumsum(values)[-1]) if len(values) else 0


def _hit_at_one(predictions: np.ndarray, actuals: np.ndarray) -> float:
    """The original's hit at one, with labels read as float64."""
    top_prediction = np.argmax(predictions, 1)
    hits = actuals[np.arange(actuals.shape[0]), top_prediction].astype(np.float64)
    return np.average(hits)


def _precision_at_equal_recall_rate(
    predictions: np.ndarray, labels: _BatchLabels, top_scores: np.ndarray
) -> float:
    """The original's PERR of a batch.

    Args:
      predictions: [batch, classes] scores.
      labels: the batch's summarised labels.
      top_scores: [batch, k] the k highest scores of each video, in any order.

    Returns:
      The mean over videos of each video's precision at equal recall rate.
    """
    num_videos = predictions.shape[0]
    precisions = np.zeros(num_videos, dtype=np.float64)
    if labels.binary:
        exact_rows = _binary_precisions(predictions, labels, top_scores, precisions)
    else:
        exact_rows = np.arange(num_videos)
    if len(exact_rows):
        precisions[exact_rows] = _precisions_like_original(predictions, labels, exact_rows)
    aggregated_precision = float(np.cumsum(precisions)[-1]) if num_videos else 0.0
    return aggregated_precision / num_videos


def _binary_precisions(
    predictions: np.ndarray, labels: _BatchLabels, top_scores: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """PERR of the videos whose result does not depend on argpartition's tie choice.

    With 0/1 labels, a video with n labels takes its n highest scores: every score above
    t (the n-th highest) and some of the scores equal to t. Positives above t (and > 0)
    all count. The tied ones add nothing if t <= 0 or none of them is positive, and all
    the free places if every score equal to t is a positive (known when t is above the
    k-th score, so that they are all among the top k).

    Args:
      predictions: [batch, classes] scores.
      labels: binary labels of the batch.
      top_scores: [batch, k] the k highest scores of each video, in any order.
      out: per-video precisions, filled for the videos decided here.

    Returns:
      The videos that need the original's argpartition (ties of mixed labels at the
      n-th place, or more labels than k).
    """
    width = top_scores.shape[1]
    num_labels = labels.labels_per_video
    decidable = np.flatnonzero((num_labels > 0) & (num_labels <= width))
    n = num_labels[decidable]
    scores = -np.sort(-top_scores[decidable], axis=1)  # descending
    threshold = scores[np.arange(len(decidable)), n - 1]
    above = (scores > threshold[:, None]).sum(axis=1)
    tied = (scores == threshold[:, None]).sum(axis=1)
    row_threshold = np.zeros(len(num_labels), dtype=predictions.dtype)
    row_threshold[decidable] = threshold
    positive_scores = predictions[labels.rows, labels.columns]
    positive_threshold = row_threshold[labels.rows]
    counts_above = np.bincount(
        labels.rows,
        weights=(positive_scores > positive_threshold) & (positive_scores > 0),
        minlength=len(num_labels),
    )[decidable]
    positives_tied = np.bincount(
        labels.rows, weights=positive_scores == positive_threshold, minlength=len(num_labels)
    )[decidable]
    ties_add_nothing = (threshold <= 0) | (positives_tied == 0)
    ties_all_positive = (threshold > scores[:, -1]) & (positives_tied == tied)
    decided = ties_add_nothing | ties_all_positive
    counts = counts_above + np.where(ties_add_nothing, 0, n - above)
    out[decidable[decided]] = counts[decided] / n[decided]
    return np.concatenate((decidable[~decided], np.flatnonzero(num_labels > width)))


def _precisions_like_original(
    predictions: np.ndarray, labels: _BatchLabels, rows: np.ndarray
) -> np.ndarray:
    """The original's per-video PERR loop for the given videos, grouped by label count.

    Each group runs argpartition with the same kth as the original's per-row calls (in
    parallel row chunks), and the labels of the chosen classes are added in the order
    argpartition returns them (np.cumsum is sequential).
    """
    precisions = np.zeros(len(rows), dtype=np.float64)
    num_labels = labels.labels_per_video[rows]
    num_classes = predictions.shape[1]

    for count in np.unique(num_labels).tolist():
        members = np.flatnonzero(num_labels == count)
        videos = rows[members]

        def group_precisions(start: int, stop: int, videos=videos, count=count) -> np.ndarray:
            chunk = videos[start:stop]
            video_predictions = predictions[chunk]
            top_indices = np.argpartition(video_predictions, -count, axis=1)[:, -count:]
            if top_indices.shape[1] == 0:
                raise ZeroDivisionError("float division by zero")
            scores = np.take_along_axis(video_predictions, top_indices, axis=1)
            chosen_labels = labels.labels[chunk[:, None], top_indices]
            added = np.where(scores > 0, chosen_labels.astype(np.float64), 0.0)
            return np.cumsum(added, axis=1)[:, -1] / top_indices.shape[1]

        parts = _map_row_chunks(group_precisions, len(videos), num_classes)
        precisions[members] = np.concatenate(parts)
    return precisions


# ---------------------------------------------------------------------------------------
# Row chunks run in parallel threads.
# ---------------------------------------------------------------------------------------


def _usable_cpus() -> int:
    """The number of CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


# At most this many chunks per call: one for the calling thread, the rest for the pool.
_MAX_CHUNKS = _usable_cpus()
# A chunk of fewer elements costs more to hand to a thread than it saves.
_MIN_CHUNK_ELEMENTS = 1 << 18
# Rows per np.argpartition call in _scan_rows.
_ARGPARTITION_ROWS = 128
_POOL: dict[str, ThreadPoolExecutor | None] = {"executor": None}  # created on first use
_POOL_LOCK = threading.Lock()

_Result = TypeVar("_Result")


def _executor() -> ThreadPoolExecutor:
    """The shared thread pool, created the first time it is needed."""
    with _POOL_LOCK:
        if _POOL["executor"] is None:
            _POOL["executor"] = ThreadPoolExecutor(
                max_workers=max(_MAX_CHUNKS - 1, 1), thread_name_prefix="eval_util"
            )
        return _POOL["executor"]


def _forget_executor_after_fork() -> None:
    """Drops the pool in a forked child: the parent's worker threads do not exist there."""
    global _POOL_LOCK
    _POOL_LOCK = threading.Lock()
    _POOL["executor"] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_executor_after_fork)


def _map_row_chunks(
    function: Callable[[int, int], _Result], num_rows: int, row_size: int
) -> list[_Result]:
    """Calls function(start, stop) on consecutive ranges of rows, at the same time.

    The rows are cut into at most _MAX_CHUNKS ranges of about the same size, of at
    least _MIN_CHUNK_ELEMENTS elements each; the calling thread computes the first one
    while the pool computes the others. `function` must only read its own rows, so that
    its results do not depend on how the rows are cut, and must not call this function.

    Args:
      function: computes something from rows start..stop-1.
      num_rows: the number of rows.
      row_size: the number of elements in a row (to judge the amount of work).

    Returns:
      The results of the calls, in row order.
    """
    num_chunks = min(_MAX_CHUNKS, num_rows, num_rows * row_size // _MIN_CHUNK_ELEMENTS)
    if num_chunks <= 1:
        return [function(0, num_rows)]
    bounds = [num_rows * chunk // num_chunks for chunk in range(num_chunks + 1)]
    executor = _executor()
    futures = [
        executor.submit(function, start, stop)
        for start, stop in zip(bounds[1:-1], bounds[2:], strict=True)
    ]
    first = function(bounds[0], bounds[1])
    return [first, *(future.result() for future in futures)]
