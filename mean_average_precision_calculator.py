"""Calculate the mean average precision.

It provides an interface for calculating mean average precision for an entire list or
the top-n ranked items.

Example usages: we first call the function accumulate many times to process parts of
the ranked list. After processing all the parts, we call peek_map_at_n to calculate the
mean average precision::

    p = np.array([[random.random() for _ in range(50)] for _ in range(1000)])
    a = np.array([[random.choice([0, 1]) for _ in range(50)] for _ in range(1000)])

    # Mean average precision for 50 classes; the inputs are given class by class.
    calculator = mean_average_precision_calculator.MeanAveragePrecisionCalculator(
        num_class=50)
    calculator.accumulate(p.T, a.T)
    aps = calculator.peek_map_at_n()

The original holds one AveragePrecisionCalculator per class and loops over them in
Python. Here one average_precision_calculator.RankedLists holds the items of all
classes, so accumulating a batch and computing all the per-class APs are a few NumPy
operations over all classes, with the same values.
"""

from collections.abc import Sequence

import numpy as np

import average_precision_calculator as ap_calculator


class MeanAveragePrecisionCalculator:
    """This class is to calculate mean average precision."""

    def __init__(self, num_class: int, filter_empty_classes: bool = True, top_n: int | None = None):
        """Constructs a calculator to calculate the (macro) average precision.

        Args:
          num_class: A positive integer specifying the number of classes.
          filter_empty_classes: whether to filter classes without any positives.
          top_n: A positive integer specifying the average precision at n, or None to
            use all provided data points.

        Raises:
          ValueError: An error occurred when num_class is not a positive integer (> 1),
            or top_n is not a positive integer or None.
        """
        if not isinstance(num_class, int) or num_class <= 1:
            raise ValueError("num_class must be a positive integer.")
        ap_calculator.check_top_n(top_n)
        self._num_class = num_class
        self._filter_empty_classes = filter_empty_classes
        self._ranked_lists = ap_calculator.RankedLists(num_lists=num_class, top_n=top_n)
        self._total_positives = np.zeros(num_class, dtype=np.float64)

    def accumulate(self, predictions, actuals, num_positives=None) -> None:
        """Accumulates the predictions and their ground truth labels.

        Args:
          predictions: A list of lists storing the prediction scores. The outer
            dimension corresponds to classes.
          actuals: A list of lists storing the ground truth labels. The dimensions
            should correspond to the predictions input. Any value larger than 0 will be
            treated as positives, otherwise as negatives.
          num_positives: If provided, it is a list of numbers representing the number of
            true positives for each class. If not provided, the number of true positives
            will be inferred from the 'actuals' array.

        Raises:
          ValueError: An error occurred when the shape of predictions and actuals does
            not match, or a num_positives entry is negative.
        """
        lengths = np.array([len(scores) for scores in predictions], dtype=np.int64)
        if len(lengths) < self._num_class:
            raise IndexError("list index out of range")  # the original's error
        lengths = lengths[: self._num_class]
        class_actuals = [np.asarray(actuals[c], dtype=np.float64) for c in range(self._num_class)]
        if any(len(a) != n for a, n in zip(class_actuals, lengths.tolist(), strict=True)):
            raise ValueError("the shape of predictions and actuals does not match.")
        class_ids = np.repeat(np.arange(self._num_class), lengths)
        flat_predictions = _concatenate_float64(predictions[: self._num_class])
        flat_actuals = _concatenate_float64(class_actuals)
        counted = np.bincount(class_ids[flat_actuals > 1e-5], minlength=self._num_class)
        if num_positives is None or len(num_positives) == 0:
            num_positives = [None] * self._num_class
        counts = np.empty(self._num_class, dtype=np.float64)
        for class_index in range(self._num_class):  # per class, not per item
            given = num_positives[class_index]
            ap_calculator.check_num_positives(given)
            counts[class_index] = counted[class_index] if given is None else given
        self.accumulate_grouped(class_ids, flat_predictions, flat_actuals, counts)

    def accumulate_grouped(
        self,
        class_ids: np.ndarray,
        predictions: np.ndarray,
        actuals: np.ndarray,
        num_positives: np.ndarray,
    ) -> None:
        """Accumulates the items of all classes given as flat arrays, grouped by class.

        The same as accumulate, without its per-class lists (used by EvaluationMetrics).

        Args:
          class_ids: the class of each item, non-decreasing; within a class the items
            are in the order the original pushes them.
          predictions: float64 scores of the items.
          actuals: float64 labels of the items.
          num_positives: float64 array, the positives to add to each class's count.

        Raises:
          ValueError: a num_positives entry is negative.
        """
        if (num_positives < 0).any():
            raise ValueError("'num_positives' was provided but it was a negative number.")
        self._total_positives += num_positives
        self._ranked_lists.add(class_ids, predictions, actuals)

    def clear(self) -> None:
        """Clears the accumulated predictions of every class."""
        self._ranked_lists.clear()
        self._total_positives[:] = 0

    def is_empty(self) -> bool:
        """Returns True if no class holds any prediction."""
        return not self._ranked_lists.sizes.any()

    def peek_map_at_n(self) -> list[float]:
        """Peeks the non-interpolated mean average precision at n.

        Returns:
          A list of the non-interpolated average precision at n (default 0) of each
          class, skipping classes without positives if filter_empty_classes is set.
        """
        aps = self._ranked_lists.average_precisions(self._total_positives)
        if self._filter_empty_classes:
            aps = aps[self._total_positives > 0]
        return aps.tolist()


def _concatenate_float64(lists: Sequence) -> np.ndarray:
    """Concatenates sequences of numbers into one float64 array."""
    pieces = [np.asarray(values, dtype=np.float64).ravel() for values in lists]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float64)
