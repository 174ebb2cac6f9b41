"""Calculate or keep track of the (non-interpolated) average precision.

It provides an interface for calculating the average precision of an entire ranked
list or of its top-n items. For the definition of the (non-)interpolated average
precision see http://trec.nist.gov/pubs/trec15/appendices/CE.MEASURES06.pdf

Example usages: `AveragePrecisionCalculator.ap(predictions, actuals)` for a list held
in memory; for a long list that arrives in parts, `accumulate` each part into an
`AveragePrecisionCalculator(top_n)`, then call its `peek_ap_at_n()`.

`RankedLists` holds many lists at once (one per class for the mean AP): each step is a
few NumPy operations over all lists, not a Python loop per list.

Faithful to the last bit: the original hands its `heapq` heap of (prediction, actual)
tuples, in the heap's array order, to `ap_at_n`, which shuffles it with
`random.seed(0); random.sample(range(L), L)` and sorts it stably by prediction. That
order matters only where a positive and a non-positive item share a prediction (a
"mixed tie"), so only lists with mixed ties get the real heap layout (built with
`heapq`) and the real shuffle (`random.sample` itself, cached per length).

Differences: the shuffle's generator is private (the global `random` state is left
alone); scores and labels are float64 (exact for float32 model outputs); NaN scores are
not supported; with top_n=0 nothing is kept (the original raises IndexError).
"""

import collections
import heapq
import itertools
import numbers
import random

import numpy as np


class AveragePrecisionCalculator:
    """Calculate the average precision and average precision at n."""

    def __init__(self, top_n: int | None = None):
        """Constructs an AveragePrecisionCalculator for a single label.

        Args:
          top_n: A positive integer specifying the average precision at n, or None to
            use all provided data points.

        Raises:
          ValueError: An error occurred when the top_n is not a positive integer.
        """
        check_top_n(top_n)
        self._ranked_list = RankedLists(num_lists=1, top_n=top_n)
        self._total_positives = 0  # total number of positives seen

    @property
    def heap_size(self) -> int:
        """Gets the heap size maintained in the class."""
        return int(self._ranked_list.sizes[0])

    @property
    def num_accumulated_positives(self):
        """Gets the number of positive samples that have been accumulated."""
        return self._total_positives

    def accumulate(self, predictions, actuals, num_positives=None) -> None:
        """Accumulates the predictions and their ground truth labels (of the same shape).

        Args:
          predictions: a list or 1-D array storing the prediction scores.
          actuals: a list or 1-D array storing the ground truth labels. Any value larger
            than 0 will be treated as positives, otherwise as negatives.
          num_positives: If the 'predictions' and 'actuals' inputs aren't complete, then
            it's possible some true positives were missed in them. In that case, you can
            provide 'num_positives' in order to accurately track recall.

        Raises:
          ValueError: An error occurred when the shape of predictions and actuals does
            not match, or num_positives is not a non-negative number.
        """
        if len(predictions) != len(actuals):
            raise ValueError("the shape of predictions and actuals does not match.")
        check_num_positives(num_positives)
        if num_positives is not None:
            self._total_positives += num_positives
        else:
            self._total_positives += np.size(np.where(np.array(actuals) > 1e-5))
        self._ranked_list.add(None, _float64(predictions), _float64(actuals))

    def clear(self) -> None:
        """Clears the accumulated predictions."""
        self._ranked_list.clear()
        self._total_positives = 0

    def peek_ap_at_n(self):
        """Peeks the non-interpolated average precision at n.

        Returns:
          The non-interpolated average precision at n (default 0). If n is larger than
          the length of the ranked list, the average precision will be returned.
        """
        if self.heap_size <= 0:
            return 0
        return float(self._ranked_list.average_precisions([self._total_positives])[0])

    @staticmethod
    def ap(predictions, actuals):
        """Calculates the non-interpolated average precision (args, errors: ap_at_n's)."""
        return AveragePrecisionCalculator.ap_at_n(predictions, actuals, n=None)

    @staticmethod
    def ap_at_n(predictions, actuals, n=20, total_num_positives=None):
        """Calculates the non-interpolated average precision at n.

        Args:
          predictions: a numpy 1-D array storing the sparse prediction scores.
          actuals: a numpy 1-D array storing the ground truth labels. Any value larger
            than 0 will be treated as positives, otherwise as negatives.
          n: the top n items to be considered in ap@n.
          total_num_positives: (optionally) you can specify the number of total positive
            in the list. If specified, it will be used in calculation.

        Returns:
          The non-interpolated average precision at n. If n is larger than the length
          of the ranked list, the average precision will be returned.

        Raises:
          ValueError: An error occurred when
            1) the shape of predictions and actuals does not match;
            2) the input n is not a positive integer.
        """
        if len(predictions) != len(actuals):
            raise ValueError("the shape of predictions and actuals does not match.")
        if n is not None and (not isinstance(n, int) or n <= 0):
            raise ValueError(f"n must be 'None' or a positive integer. It was '{n}'.")
        predictions, actuals = _float64(predictions), _float64(actuals)
        if total_num_positives is None:
            total_num_positives = np.size(np.where(actuals > 0))
        if total_num_positives == 0:
            return 0
        lengths = np.array([len(predictions)])
        aps = _average_precisions(predictions, actuals, lengths, n, [total_num_positives], True)
        return float(aps[0])


def check_top_n(top_n) -> None:
    """Raises the original's ValueError for a top_n that is neither an int >= 0 nor None."""
    if not ((isinstance(top_n, int) and top_n >= 0) or top_n is None):
        raise ValueError("top_n must be a positive integer or None.")


def check_num_positives(num_positives) -> None:
    """Raises the original's ValueError for a given num_positives that is not >= 0."""
    if num_positives is not None and (
        not isinstance(num_positives, numbers.Number) or num_positives < 0
    ):
        raise ValueError("'num_positives' was provided but it was a negative number.")


class RankedLists:
    """The items of `num_lists` ranked lists, as the original's heaps would hold them.

    Without top_n every item stays in the heap, so items are kept in push order and a
    heap is built only for an AP that depends on its layout. With top_n, each bounded
    heap follows the original's own sequence of pushes and pops.
    """

    def __init__(self, num_lists: int, top_n: int | None = None):
        """Makes `num_lists` empty lists; top_n as in AveragePrecisionCalculator."""
        self.num_lists = num_lists
        self.top_n = top_n
        self.clear()

    def clear(self) -> None:
        """Forgets every item."""
        self.sizes = np.zeros(self.num_lists, dtype=np.int64)  # each list's heap size
        self._batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._heaps: list[list[tuple[float, float]]] = [[] for _ in range(self.num_lists)]

    def add(self, list_ids: np.ndarray | None, predictions: np.ndarray, actuals: np.ndarray):
        """Adds float64 items, grouped by list (non-decreasing list_ids; None: list 0)."""
        if list_ids is None:
            list_ids = np.zeros(len(predictions), dtype=np.int64)
        counts = np.bincount(list_ids, minlength=self.num_lists)
        if self.top_n is None:
            self._batches.append((list_ids, predictions, actuals))
            self.sizes += counts
            return
        bounds = np.cumsum(counts) - counts
        for list_id in np.flatnonzero(counts):
            items = slice(bounds[list_id], bounds[list_id] + counts[list_id])
            heap = self._heaps[list_id]
            _push_bounded(heap, predictions[items], actuals[items], self.top_n)
            self.sizes[list_id] = len(heap)

    def average_precisions(self, total_positives) -> np.ndarray:
        """The original's peek_ap_at_n of every list, given its accumulated positives."""
        in_heap_order = self.top_n is not None
        if in_heap_order:
            items = np.array(list(itertools.chain.from_iterable(self._heaps)), dtype=np.float64)
            predictions, actuals = items.reshape(-1, 2).T
        else:
            list_ids, predictions, actuals = (
                np.concatenate([batch[field] for batch in self._batches] or [np.zeros(0)])
                for field in range(3)
            )
            if self.num_lists > 1:
                grouped = _stable_argsort(list_ids)
                predictions, actuals = predictions[grouped], actuals[grouped]
        return _average_precisions(
            predictions, actuals, self.sizes, self.top_n, total_positives, in_heap_order
        )


def _float64(values) -> np.ndarray:
    """A list or array of numbers as a flat float64 array."""
    return np.asarray(values, dtype=np.float64).ravel()


def _dense_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct sorted values, dense rank of each value); 3x np.unique's inverse speed."""
    order = np.argsort(values)
    sorted_values = values[order]
    is_first = np.ones(len(values), dtype=bool)
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=is_first[1:])
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[order] = np.cumsum(is_first) - 1
    return sorted_values[is_first], ranks


def _stable_argsort(keys: np.ndarray) -> np.ndarray:
    """np.argsort(keys, kind="stable") of keys >= 0; radix sort (3x faster) if < 2**16."""
    return np.argsort(keys.astype(np.min_scalar_type(keys.max(initial=0))), kind="stable")


def _push_bounded(heap: list, predictions, actuals, top_n: int) -> None:
    """Feeds items to a bounded heap with the original's per-item pushes and pops."""
    if top_n == 0:
        return  # The original fails here with an IndexError on heap[0]; keep nothing.
    for item in zip(predictions.tolist(), actuals.tolist(), strict=True):
        if len(heap) < top_n:
            heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:
            heapq.heappop(heap)  # not heapreplace: that would lay the heap out differently
            heapq.heappush(heap, item)


def _descending_keys(ranks, lengths) -> np.ndarray:
    """Keys >= 0 ordering items by list (given list after list), then rank, descending."""
    width = int(ranks.max(initial=0)) + 1
    return np.repeat(np.arange(len(lengths)) * width, lengths) + (width - 1 - ranks)


def _heap_layouts(ranks, actuals, lengths) -> tuple[np.ndarray, np.ndarray]:
    """(prediction rank, actual) of each list's items in its heapq heap's order.

    The items come in push order, list after list. The pushed keys are Python ints that
    compare as the original's tuples do (same order, same ties), so heapq lays them out
    the same way, and they compare fast.
    """
    actual_values, actual_ranks = _dense_ranks(actuals)
    keys = (ranks * len(actual_values) + actual_ranks).tolist()
    heaps = [[] for _ in lengths]
    target_heaps = itertools.chain.from_iterable(map(itertools.repeat, heaps, lengths.tolist()))
    collections.deque(map(heapq.heappush, target_heaps, keys), maxlen=0)
    layout = np.fromiter(itertools.chain.from_iterable(heaps), dtype=np.int64, count=len(keys))
    return layout // len(actual_values), actual_values[layout % len(actual_values)]


# Cached shuffles, least recently used dropped beyond this many positions (256 MB).
_SHUFFLE_CACHE_POSITIONS = 1 << 26
_shuffles: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
_cached_positions = 0


def seeded_shuffle(length: int) -> np.ndarray:
    """The original's `random.seed(0); random.sample(range(L), L)`, as an int32 array.

    Faithful by construction: the standard library's own sample, of a private
    `random.Random(0)` (the global `random` state is left alone); cached per length.
    """
    global _cached_positions
    if length in _shuffles:
        _shuffles.move_to_end(length)
        return _shuffles[length]
    sample = random.Random(0).sample(range(length), length)
    shuffle = np.fromiter(sample, dtype=np.int32, count=length)  # 1.5x np.array's speed
    if length <= _SHUFFLE_CACHE_POSITIONS:
        while _cached_positions + length > _SHUFFLE_CACHE_POSITIONS:
            _cached_positions -= len(_shuffles.popitem(last=False)[1])
        _shuffles[length] = shuffle
        _cached_positions += length
    return shuffle


def _average_precisions(predictions, actuals, lengths, n, total_positives, in_heap_order):
    """The original's ap_at_n of several lists, given list after list.

    A stable sort by prediction ranks each list as the original does, unless a positive
    and a non-positive item share a prediction (a mixed tie): only lists with mixed ties
    are ranked again, the original's way (see _original_ranking). n and total_positives
    (one per list) are the original's. Returns float64 APs (0.0 without positives).
    """
    ranks, positive = _dense_ranks(predictions)[1], actuals > 0
    keys = _descending_keys(ranks, lengths)
    ranked = _stable_argsort(keys)
    ranked_keys, ranked_positive = keys[ranked], positive[ranked]
    ties = ranked_keys[1:] == ranked_keys[:-1]
    mixed_ties = ties & (ranked_positive[1:] != ranked_positive[:-1])
    mixed = np.zeros(len(lengths), dtype=bool)
    mixed[np.repeat(np.arange(len(lengths)), lengths)[1:][mixed_ties]] = True
    if mixed.any():
        in_mixed = np.repeat(mixed, lengths)
        ranked_positive[in_mixed] = _original_ranking(
            ranks[in_mixed], actuals[in_mixed], lengths[mixed], in_heap_order
        )
    return _sum_precisions(ranked_positive, lengths, n, total_positives)


def _original_ranking(ranks, actuals, lengths, in_heap_order) -> np.ndarray:
    """Whether each item is positive, each list ranked as the original's ap_at_n does.

    Laid out as its heap (unless in_heap_order), shuffled, sorted stably by prediction.
    """
    if not in_heap_order:
        ranks, actuals = _heap_layouts(ranks, actuals, lengths)
    positive = actuals > 0
    permutations = np.concatenate([seeded_shuffle(length) for length in lengths.tolist()])
    shuffled = np.repeat(np.cumsum(lengths) - lengths, lengths) + permutations
    return positive[shuffled[_stable_argsort(_descending_keys(ranks[shuffled], lengths))]]


def _sum_precisions(positive, lengths, n, total_positives) -> np.ndarray:
    """Sums `(positives so far / rank) / numpos` as the original's `ap +=` loop.

    Over the positives of each ranked list's first min(L, n) ranks, left to right.
    """
    starts = np.cumsum(lengths) - lengths
    list_ids = np.repeat(np.arange(len(lengths)), lengths)
    rank = np.arange(len(positive)) - starts[list_ids]
    top = np.inf if n is None else n
    is_positive = positive & (rank < top)
    positives_so_far = np.cumsum(is_positive)
    positives_so_far -= (positives_so_far - is_positive)[starts[list_ids]]
    numpos = np.minimum(np.asarray(total_positives, dtype=np.float64), top)
    delta_recall = np.divide(1.0, numpos, out=np.zeros_like(numpos), where=numpos != 0)
    precisions = positives_so_far[is_positive] / (rank[is_positive] + 1)  # float64
    terms = (precisions * delta_recall[list_ids[is_positive]]).tolist()
    bounds = np.cumsum(np.bincount(list_ids[is_positive], minlength=len(lengths))).tolist()
    return np.array(
        [sum(terms[begin:end]) for begin, end in zip([0, *bounds], bounds)], dtype=np.float64
    )
