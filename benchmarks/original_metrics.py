"""The original starter code's metrics, transcribed plainly: the reference to compare to.

google/youtube-8m's average_precision_calculator.py, mean_average_precision_calculator.py
and eval_util.py, in one module and in their own algorithm: one heapq heap per class
with one push per item, Python loops per video and per item, and `ap_at_n`'s shuffle
that reseeds the GLOBAL `random` generator (`random.seed(0); random.sample`), exactly as
the original does. The tests and benchmarks/bench_metrics.py check the project's metric
modules against it, value for value (`==`).

The project's decisions, applied here too so that the values can be equal: labels and
losses are read as float64 (the original kept float32 labels, which made its GAP drift
by ~1e-4), and `actuals` may be a list (the original needed an array).
"""

import heapq
import numbers
import random

import numpy as np


class AveragePrecisionCalculator:
    """The original AveragePrecisionCalculator: a heap of (prediction, actual) tuples."""

    def __init__(self, top_n=None):
        """Same arguments and error as the project's AveragePrecisionCalculator."""
        if not ((isinstance(top_n, int) and top_n >= 0) or top_n is None):
            raise ValueError("top_n must be a positive integer or None.")
        self._top_n = top_n
        self._total_positives = 0
        self._heap = []

    @property
    def heap_size(self):
        """Gets the heap size maintained in the class."""
        return len(self._heap)

    @property
    def num_accumulated_positives(self):
        """Gets the number of positive samples that have been accumulated."""
        return self._total_positives

    def accumulate(self, predictions, actuals, num_positives=None):
        """Pushes every item, one heapq call per item."""
        if len(predictions) != len(actuals):
            raise ValueError("the shape of predictions and actuals does not match.")
        if num_positives is not None and (
            not isinstance(num_positives, numbers.Number) or num_positives < 0
        ):
            raise ValueError("'num_positives' was provided but it was a negative number.")
        if num_positives is not None:
            self._total_positives += num_positives
        else:
            self._total_positives += np.size(np.where(np.asarray(actuals) > 1e-5))
        heap = self._heap
        for i in range(np.size(predictions)):
            if self._top_n is None or len(heap) < self._top_n:
                heapq.heappush(heap, (predictions[i], actuals[i]))
            elif predictions[i] > heap[0][0]:  # heap[0] is the smallest
                heapq.heappop(heap)
                heapq.heappush(heap, (predictions[i], actuals[i]))

    def clear(self):
        """Clears the accumulated predictions."""
        self._heap = []
        self._total_positives = 0

    def peek_ap_at_n(self):
        """AP of the heap, passed to ap_at_n in the heap's array order."""
        if self.heap_size <= 0:
            return 0
        predlists = np.array(list(zip(*self._heap, strict=True)))
        return self.ap_at_n(
            predlists[0], predlists[1], n=self._top_n, total_num_positives=self._total_positives
        )

    @staticmethod
    def ap(predictions, actuals):
        """The non-interpolated average precision of the whole list."""
        return AveragePrecisionCalculator.ap_at_n(predictions, actuals, n=None)

    @staticmethod
    def ap_at_n(predictions, actuals, n=20, total_num_positives=None):
        """Shuffles with the global generator seeded 0, sorts stably, adds the terms."""
        if len(predictions) != len(actuals):
            raise ValueError("the shape of predictions and actuals does not match.")
        if n is not None and (not isinstance(n, int) or n <= 0):
            raise ValueError(f"n must be 'None' or a positive integer. It was '{n}'.")
        ap = 0.0
        predictions = np.array(predictions)
        actuals = np.array(actuals)
        predictions, actuals = AveragePrecisionCalculator._shuffle(predictions, actuals)
        sortidx = sorted(range(len(predictions)), key=lambda k: predictions[k], reverse=True)
        if total_num_positives is None:
            numpos = np.size(np.where(actuals > 0))
        else:
            numpos = total_num_positives
        if numpos == 0:
            return 0
        if n is not None:
            numpos = min(numpos, n)
        delta_recall = 1.0 / numpos
        poscount = 0.0
        r = len(sortidx) if n is None else min(len(sortidx), n)
        for i in range(r):
            if actuals[sortidx[i]] > 0:
                poscount += 1
                ap += poscount / (i + 1) * delta_recall
        return ap

    @staticmethod
    def _shuffle(predictions, actuals):
        random.seed(0)  # Faithful: the original reseeds the global generator.
        suffidx = random.sample(range(len(predictions)), len(predictions))
        return predictions[suffidx], actuals[suffidx]


class MeanAveragePrecisionCalculator:
    """The original MeanAveragePrecisionCalculator: one AP calculator per class."""

    def __init__(self, num_class, filter_empty_classes=True, top_n=None):
        """Same arguments and errors as the project's MeanAveragePrecisionCalculator."""
        if not isinstance(num_class, int) or num_class <= 1:
            raise ValueError("num_class must be a positive integer.")
        self._num_class = num_class
        self._filter_empty_classes = filter_empty_classes
        self._ap_calculators = [AveragePrecisionCalculator(top_n=top_n) for _ in range(num_class)]

    def accumulate(self, predictions, actuals, num_positives=None):
        """Feeds each class's list to its calculator."""
        if num_positives is None or len(num_positives) == 0:  # the original: `if not ...`
            num_positives = [None for _ in range(self._num_class)]
        for i in range(self._num_class):
            self._ap_calculators[i].accumulate(predictions[i], actuals[i], num_positives[i])

    def clear(self):
        """Clears every class's calculator."""
        for calculator in self._ap_calculators:
            calculator.clear()

    def is_empty(self):
        """Whether no class holds a prediction."""
        return [c.heap_size for c in self._ap_calculators] == [0] * self._num_class

    def peek_map_at_n(self):
        """The AP of every class (with positives, if filter_empty_classes)."""
        return [
            calculator.peek_ap_at_n()
            for calculator in self._ap_calculators
            if not self._filter_empty_classes or calculator.num_accumulated_positives > 0
        ]


def flatten(l):  # noqa: E741 (the original's name)
    """Merges a list of lists into a single list."""
    return [item for sublist in l for item in sublist]


def calculate_hit_at_one(predictions, actuals):
    """The original hit at one."""
    actuals = np.asarray(actuals, dtype=np.float64)
    top_prediction = np.argmax(predictions, 1)
    hits = actuals[np.arange(actuals.shape[0]), top_prediction]
    return np.average(hits)


def calculate_precision_at_equal_recall_rate(predictions, actuals):
    """The original PERR: a Python loop per video."""
    actuals = np.asarray(actuals, dtype=np.float64)
    aggregated_precision = 0.0
    num_videos = actuals.shape[0]
    for row in np.arange(num_videos):
        num_labels = int(np.sum(actuals[row]))
        top_indices = np.argpartition(predictions[row], -num_labels)[-num_labels:]
        item_precision = 0.0
        for label_index in top_indices:
            if predictions[row][label_index] > 0:
                item_precision += actuals[row][label_index]
        item_precision /= top_indices.size
        aggregated_precision += item_precision
    aggregated_precision /= num_videos
    return aggregated_precision


def calculate_gap(predictions, actuals, top_k=20):
    """The original GAP: one AP calculator over every video's top_k entries."""
    gap_calculator = AveragePrecisionCalculator()
    sparse_predictions, sparse_labels, num_positives = top_k_by_class(predictions, actuals, top_k)
    gap_calculator.accumulate(
        flatten(sparse_predictions), flatten(sparse_labels), sum(num_positives)
    )
    return gap_calculator.peek_ap_at_n()


def top_k_by_class(predictions, labels, k=20):
    """The original top_k_by_class: a Python loop per video."""
    labels = np.asarray(labels, dtype=np.float64)
    if k <= 0:
        raise ValueError("k must be a positive integer.")
    k = min(k, predictions.shape[1])
    num_classes = predictions.shape[1]
    prediction_triplets = []
    for video_index in range(predictions.shape[0]):
        prediction_triplets.extend(top_k_triplets(predictions[video_index], labels[video_index], k))
    out_predictions = [[] for _ in range(num_classes)]
    out_labels = [[] for _ in range(num_classes)]
    for triplet in prediction_triplets:
        out_predictions[triplet[0]].append(triplet[1])
        out_labels[triplet[0]].append(triplet[2])
    out_true_positives = [np.sum(labels[:, i]) for i in range(num_classes)]
    return out_predictions, out_labels, out_true_positives


def top_k_triplets(predictions, labels, k=20):
    """The (class, prediction, label) of one video's top k."""
    m = len(predictions)
    k = min(k, m)
    indices = np.argpartition(predictions, -k)[-k:]
    return [(index, predictions[index], labels[index]) for index in indices]


class EvaluationMetrics:
    """The original EvaluationMetrics."""

    def __init__(self, num_class, top_k, top_n=None):
        """Same arguments and errors as the project's EvaluationMetrics."""
        self.sum_hit_at_one = 0.0
        self.sum_perr = 0.0
        self.sum_loss = 0.0
        self.map_calculator = MeanAveragePrecisionCalculator(num_class, top_n=top_n)
        self.global_ap_calculator = AveragePrecisionCalculator()
        self.top_k = top_k
        self.num_examples = 0

    def accumulate(self, predictions, labels, loss):
        """Accumulates one batch as the original does."""
        labels = np.asarray(labels, dtype=np.float64)
        batch_size = labels.shape[0]
        mean_hit_at_one = calculate_hit_at_one(predictions, labels)
        mean_perr = calculate_precision_at_equal_recall_rate(predictions, labels)
        mean_loss = np.mean(np.asarray(loss, dtype=np.float64))
        sparse_predictions, sparse_labels, num_positives = top_k_by_class(
            predictions, labels, self.top_k
        )
        self.map_calculator.accumulate(sparse_predictions, sparse_labels, num_positives)
        self.global_ap_calculator.accumulate(
            flatten(sparse_predictions), flatten(sparse_labels), sum(num_positives)
        )
        self.num_examples += batch_size
        self.sum_hit_at_one += mean_hit_at_one * batch_size
        self.sum_perr += mean_perr * batch_size
        self.sum_loss += mean_loss * batch_size
        return {"hit_at_one": mean_hit_at_one, "perr": mean_perr, "loss": mean_loss}

    def get(self):
        """The metrics of everything accumulated."""
        if self.num_examples <= 0:
            raise ValueError("total_sample must be positive.")
        return {
            "avg_hit_at_one": self.sum_hit_at_one / self.num_examples,
            "avg_perr": self.sum_perr / self.num_examples,
            "avg_loss": self.sum_loss / self.num_examples,
            "aps": self.map_calculator.peek_map_at_n(),
            "gap": self.global_ap_calculator.peek_ap_at_n(),
        }

    def clear(self):
        """Resets everything accumulated."""
        self.sum_hit_at_one = 0.0
        self.sum_perr = 0.0
        self.sum_loss = 0.0
        self.map_calculator.clear()
        self.global_ap_calculator.clear()
        self.num_examples = 0
