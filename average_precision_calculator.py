"""Calculate or keep track of the (non-interpolated) average precision.

It provides an interface for calculating the average precision of an entire ranked
list or of its top-n items. For the definition of the (non-)interpolated average
precision see http://trec.nist.gov/pubs/trec15/appendices/CE.MEASURES06.pdf

Example usages:

1) As a static function, for a short ranked list held in memory::

    p = np.array([random.random() for _ in range(10)])
    a = np.array([random.choice([0, 1]) for _ in range(10)])
    ap = average_precision_calculator.AveragePrecisionCalculator.ap(p, a)

2) As an object, for a long ranked list that arrives in parts (for example one batch
   of model predictions at a time)::

    calculator = average_precision_calculator.AveragePrecisionCalculator(10)
    calculator.accumulate(p1, a1)
    calculator.accumulate(p2, a2)
    ap3 = calculator.peek_ap_at_n()

How this port stays equal to the original to the last bit, while being vectorised
----------------------------------------------------------------------------------
The original keeps a `heapq` min-heap of `(prediction, actual)` tuples, one push per
item, and `peek_ap_at_n` hands the heap's *internal array order* to `ap_at_n`. That
function reseeds Python's global RNG (`random.seed(0)`), permutes the list with
`random.sample(range(L), L)` and sorts it by prediction, descending, with a stable sort.
So when predictions tie and their labels differ, the AP depends on the heap's array
layout and on that particular permutation. This module reproduces both exactly:

* Heap layout. No formula gives the layout that a sequence of pushes produces, so the
  heap is really built with `heapq`, but by C-level `map(heapq.heappush, ...)` over a
  whole batch rather than a Python loop per item. The items are small Python ints that
  compare exactly as the original tuples do: for numbers, ordering and equality are
  all `heapq` looks at, so equal keys give the same layout. A key packs an
  order-preserving integer code of the prediction, then of the label, then one bit
  saying whether the label is positive. That bit depends only on the label, so it never
  changes a comparison. The keys are pushed as their dense ranks, which compare the
  same way and are cheaper Python ints. Without `top_n`, every item stays in the heap,
  so the items are kept as compact arrays and the heap is built when a result is asked
  for. With `top_n`, the bounded heap is kept up to date with the original's exact
  sequence of pushes and pops (tuples of Python floats, as in the original). A
  vectorised pre-filter drops the items that cannot enter.
* Permutation. `random.sample(range(L), L)` is computed from the same Mersenne Twister
  words (`random.Random(0).getrandbits`) with the same rejection sampling and the same
  pool swaps, vectorised (see `_sample_permutations`). On first use it is checked
  against `random.sample` itself, and a mismatch (a future Python changing its
  algorithm) falls back to calling `random.sample`. Like the original, the global
  `random` state is left as `random.seed(0)` plus the words the last shuffle consumed.
* Sums. The original adds the AP terms one by one in rank order. Here they are added
  in the same order with `np.cumsum`, which is sequential, not pairwise like `np.sum`.

Differences from the original: scores and labels are held as float64 (exact for the
float32 model outputs); NaN scores are not supported (the original's comparisons with
NaN are not an order either); with top_n=0 nothing is kept, where the original raises
IndexError on the first item.
"""

import collections
import heapq
import itertools
import numbers
import random
from collections.abc import Sequence

import numpy as np

# ---------------------------------------------------------------------------------------
# Public API (same names, signatures, defaults and errors as the original).
# ---------------------------------------------------------------------------------------


class AveragePrecisionCalculator:
    """Calculate the average precision and average precision at n."""

    def __init__(self, top_n: int | None = None):
        """Constructs an AveragePrecisionCalculator to calculate average precision.

        This class is used to calculate the average precision for a single label.

        Args:
          top_n: A positive integer specifying the average precision at n, or None to
            use all provided data points.

        Raises:
          ValueError: An error occurred when the top_n is not a positive integer.
        """
        if not ((isinstance(top_n, int) and top_n >= 0) or top_n is None):
            raise ValueError("top_n must be a positive integer or None.")
        self._top_n = top_n
        self._ranked_lists = _RankedLists(num_lists=1, top_n=top_n)
        self._total_positives = 0  # total number of positives seen

    @property
    def heap_size(self) -> int:
        """Gets the heap size maintained in the class."""
        return int(self._ranked_lists.sizes()[0])

    @property
    def num_accumulated_positives(self):
        """Gets the number of positive samples that have been accumulated."""
        return self._total_positives

    def accumulate(self, predictions, actuals, num_positives=None) -> None:
        """Accumulates the predictions and their ground truth labels.

        After the function call, we may call peek_ap_at_n to actually calculate the
        average precision. Note predictions and actuals must have the same shape.

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
        _check_num_positives(num_positives)
        if num_positives is not None:
            self._total_positives += num_positives
        else:
            self._total_positives += np.size(np.where(np.array(actuals) > 1e-5))
        predictions = np.asarray(predictions, dtype=np.float64).ravel()
        actuals = np.asarray(actuals, dtype=np.float64).ravel()
        self._ranked_lists.add(None, predictions, actuals)

    def clear(self) -> None:
        """Clears the accumulated predictions."""
        self._ranked_lists.clear()
        self._total_positives = 0

    def peek_ap_at_n(self):
        """Peeks the non-interpolated average precision at n.

        Returns:
          The non-interpolated average precision at n (default 0). If n is larger than
          the length of the ranked list, the average precision will be returned.
        """
        if self.heap_size <= 0:
            return 0
        order_codes, positive, lengths, shuffled_lists = self._ranked_lists.heap_layouts()
        aps = _average_precisions(
            order_codes,
            positive,
            lengths,
            self._top_n,
            np.array([self._total_positives]),
            shuffled_lists,
        )
        _leave_global_random_as_original(self.heap_size)
        return float(aps[0])

    @staticmethod
    def ap(predictions, actuals):
        """Calculates the non-interpolated average precision.

        Args:
          predictions: a numpy 1-D array storing the sparse prediction scores.
          actuals: a numpy 1-D array storing the ground truth labels. Any value larger
            than 0 will be treated as positives, otherwise as negatives.

        Returns:
          The non-interpolated average precision of the whole list.

        Raises:
          ValueError: An error occurred when the shape of predictions and actuals does
            not match.
        """
        return AveragePrecisionCalculator.ap_at_n(predictions, actuals, n=None)

    @staticmethod
    def ap_at_n(predictions, actuals, n=20, total_num_positives=None):
        """Calculates the non-interpolated average precision at n.

        Ties in `predictions` are broken by the original's seeded shuffle
        (`random.seed(0)`, `random.sample`), so equal inputs give equal results.

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
        predictions = np.array(predictions, dtype=np.float64).ravel()
        actuals = np.array(actuals, dtype=np.float64).ravel()
        length = len(predictions)
        if total_num_positives is None:
            total_num_positives = np.size(np.where(actuals > 0))
        _leave_global_random_as_original(length)
        if total_num_positives == 0:
            return 0
        aps = _average_precisions(
            _order_codes(predictions),
            actuals > 0,
            np.array([length]),
            n,
            np.array([total_num_positives]),
        )
        return float(aps[0])


def _check_num_positives(num_positives) -> None:
    """Raises the original's ValueError for a given num_positives that is not >= 0."""
    if num_positives is not None and (
        not isinstance(num_positives, numbers.Number) or num_positives < 0
    ):
        raise ValueError("'num_positives' was provided but it was a negative number.")


# ---------------------------------------------------------------------------------------
# Storage of ranked lists, with the original's heap layouts.
# ---------------------------------------------------------------------------------------


class _RankedLists:
    """The items of `num_lists` ranked lists, as the original's heaps would hold them.

    One instance serves a single AveragePrecisionCalculator (one list) or a whole
    MeanAveragePrecisionCalculator (one list per class), so per-class work is done for
    all classes at once instead of by a Python loop over calculators.
    """

    def __init__(self, num_lists: int, top_n: int | None):
        self._num_lists = num_lists
        self._top_n = top_n
        self.clear()

    def clear(self) -> None:
        """Forgets every item."""
        self._sizes = np.zeros(self._num_lists, dtype=np.int64)
        # Without top_n: batches of (list_ids or None, predictions, actuals), in push order.
        self._batches: list[tuple[np.ndarray | None, np.ndarray, np.ndarray]] = []
        # With top_n: one bounded heap of (prediction, actual) tuples per list.
        self._heaps: list[list[tuple[float, float]]] = (
            [[] for _ in range(self._num_lists)] if self._top_n is not None else []
        )

    def sizes(self) -> np.ndarray:
        """Returns the heap size of every list (int64 array)."""
        return self._sizes

    def add(self, list_ids: np.ndarray | None, predictions: np.ndarray, actuals: np.ndarray):
        """Adds items in the order the original pushes them.

        Without top_n the arrays are just kept (every item stays in the original's
        heap). With top_n each list's bounded heap is updated now, by _push_bounded for
        every list that received items.

        Args:
          list_ids: the list of each item, non-decreasing (items grouped by list), or
            None when there is a single list.
          predictions: float64 scores.
          actuals: float64 labels.
        """
        if len(predictions) == 0:
            return
        if list_ids is None:
            counts = np.array([len(predictions)], dtype=np.int64)
        else:
            counts = np.bincount(list_ids, minlength=self._num_lists).astype(np.int64)
        if self._top_n is None:
            self._batches.append((list_ids, predictions, actuals))
            self._sizes += counts
            return
        starts = np.concatenate(([0], np.cumsum(counts)))
        for list_id in np.flatnonzero(counts):
            begin, end = starts[list_id], starts[list_id + 1]
            heap = self._heaps[list_id]
            _push_bounded(heap, predictions[begin:end], actuals[begin:end], self._top_n)
            self._sizes[list_id] = len(heap)

    def heap_layouts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Returns every list's items in its heap's internal array order.

        The order only matters for a list where some prediction value is shared by a
        positive and a non-positive item (a "mixed tie"), so only those lists have their
        heap built; the others are returned in push order.

        Returns:
          (order_codes, positive, lengths, shuffled_lists): order_codes are int64 codes
          of the predictions (same order and ties as the predictions), positive says
          whether the label is > 0; both are concatenated list after list. lengths is
          the heap size of each list. shuffled_lists says which lists have mixed ties
          (None: not computed).
        """
        if self._top_n is not None:
            return *self._bounded_heap_layouts(), None
        lengths = self._sizes.copy()
        if not self._batches:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.astype(bool), lengths, np.zeros(len(lengths), dtype=bool)
        predictions = np.concatenate([batch[1] for batch in self._batches])
        actuals = np.concatenate([batch[2] for batch in self._batches])
        if self._num_lists > 1:
            list_ids = np.concatenate([batch[0] for batch in self._batches])
            grouped = _stable_group_order(list_ids)
            predictions, actuals = predictions[grouped], actuals[grouped]
        keys, prediction_shift = _heap_keys(predictions, actuals)
        order_codes, positive = keys >> prediction_shift, (keys & 1).astype(bool)
        mixed = _lists_with_mixed_ties(order_codes, positive, lengths)
        if mixed.any():
            in_mixed_lists = np.flatnonzero(np.repeat(mixed, lengths))
            layout = _push_only_heaps(keys[in_mixed_lists], lengths[mixed])
            order_codes[in_mixed_lists] = layout >> prediction_shift
            positive[in_mixed_lists] = (layout & 1).astype(bool)
        return order_codes, positive, lengths, mixed

    def _bounded_heap_layouts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """heap_layouts() for the top_n case, read from the kept tuple heaps."""
        total = int(self._sizes.sum())
        flat = np.fromiter(
            itertools.chain.from_iterable(itertools.chain.from_iterable(self._heaps)),
            dtype=np.float64,
            count=2 * total,
        ).reshape(total, 2)
        return _order_codes(flat[:, 0]), flat[:, 1] > 0, self._sizes.copy()


def _push_bounded(heap: list, predictions: np.ndarray, actuals: np.ndarray, top_n: int):
    """Feeds items to a bounded heap exactly as the original's per-item loop does.

    The original pushes while the heap holds fewer than top_n items, then for each
    item with `prediction > heap[0][0]` pops the smallest and pushes the new one. Items
    not above the heap minimum at the start of the replacement phase can never enter
    (the minimum only grows), so they are dropped by a vectorised filter and only the
    candidates go through the Python loop, in their original order.
    """
    if top_n == 0:
        return  # The original fails here with an IndexError on heap[0]; keep nothing.
    room = max(top_n - len(heap), 0)
    fill = zip(predictions[:room].tolist(), actuals[:room].tolist(), strict=True)
    collections.deque(map(heapq.heappush, itertools.repeat(heap), fill), maxlen=0)
    rest_predictions, rest_actuals = predictions[room:], actuals[room:]
    if len(rest_predictions) == 0:
        return
    candidates = rest_predictions > heap[0][0]
    for prediction, actual in zip(
        rest_predictions[candidates].tolist(), rest_actuals[candidates].tolist(), strict=True
    ):
        if prediction > heap[0][0]:
            heapq.heappop(heap)
            heapq.heappush(heap, (prediction, actual))


def _stable_group_order(list_ids: np.ndarray) -> np.ndarray:
    """Returns the permutation that groups items by list, keeping their order within a list.

    A stable sort by list id, done as a plain sort of unique int64 keys, which numpy
    does much faster than a stable argsort.
    """
    index_bits = max(len(list_ids).bit_length(), 1)
    keys = (list_ids.astype(np.int64) << index_bits) | np.arange(len(list_ids))
    return np.sort(keys) & ((1 << index_bits) - 1)


def _push_only_heaps(keys: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Builds one heapq heap per list by pushing its keys in order; returns the layouts.

    Args:
      keys: int64 keys, grouped list after list, each list's keys in push order.
      lengths: the number of keys of each list.

    Returns:
      The keys of every heap in heapq's internal array order, list after list.
    """
    # The dense ranks of the keys compare exactly as the keys do (same order, same
    # ties), so heapq lays them out the same way. They are much cheaper Python ints:
    # one digit (< 2**30) instead of two, and no allocation at all for ranks below 257,
    # which CPython caches (scores rounded to a few decimals have few distinct values).
    distinct_keys, ranks = _dense_ranks(keys)
    heaps = [[] for _ in range(len(lengths))]
    target_heaps = itertools.chain.from_iterable(map(itertools.repeat, heaps, lengths.tolist()))
    collections.deque(map(heapq.heappush, target_heaps, ranks.tolist()), maxlen=0)
    items = heaps[0] if len(heaps) == 1 else itertools.chain.from_iterable(heaps)
    return distinct_keys[np.fromiter(items, dtype=np.intp, count=len(keys))]


def _dense_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(values, return_inverse=True) for non-negative int64 values, faster.

    When a value and its index fit together in 63 bits, one plain sort of
    (value, index) packed in an int64 replaces np.unique's much slower argsort.

    Returns:
      (distinct, ranks): the sorted distinct values, and the rank of each value among
      them, so that distinct[ranks] == values.
    """
    index_bits = max(len(values).bit_length(), 1)
    if len(values) == 0 or int(values.max()).bit_length() + index_bits > 63:
        distinct, ranks = np.unique(values, return_inverse=True)
        return distinct, ranks.ravel()
    packed = np.sort((values << index_bits) | np.arange(len(values)))
    sorted_values = packed >> index_bits
    starts_group = np.empty(len(values), dtype=bool)
    starts_group[0] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=starts_group[1:])
    ranks = np.empty(len(values), dtype=np.intp)
    ranks[packed & ((1 << index_bits) - 1)] = np.cumsum(starts_group) - 1
    return sorted_values[starts_group], ranks


# ---------------------------------------------------------------------------------------
# Integer codes that order like the original's numbers and tuples.
# ---------------------------------------------------------------------------------------

_MAGNITUDE_BITS = np.int64(0x7FFFFFFFFFFFFFFF)
_CODE_BITS = 31  # order codes are below 2**31, so two of them and a flag fit in an int64


def _ordered_int64(values: np.ndarray) -> np.ndarray:
    """Maps float64 values to int64 with the same order and the same ties.

    Adding 0.0 turns -0.0 into 0.0 (they compare equal); negative floats get their
    magnitude bits inverted so that larger magnitudes map to smaller integers.
    """
    bits = (values + 0.0).view(np.int64)
    return bits ^ ((bits >> 63) & _MAGNITUDE_BITS)


def _order_codes(values: np.ndarray) -> np.ndarray:
    """Small non-negative int64 codes with the same order and ties as `values`.

    The ordered bit patterns are shifted to start at 0 and divided by their common power
    of two (float32 scores seen as float64 have 29 zero low bits), which keeps the codes
    short without a sort. If they are still wider than _CODE_BITS bits, the dense rank
    (np.unique) is used instead.
    """
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    ordered = _ordered_int64(values)
    offsets = ordered - ordered.min()  # wraps, but is exact read as uint64
    common = int(np.bitwise_or.reduce(offsets.view(np.uint64)))
    shift = (common & -common).bit_length() - 1 if common else 0
    codes = offsets.view(np.uint64) >> np.uint64(shift)
    if int(codes.max()).bit_length() > _CODE_BITS:
        return np.unique(ordered, return_inverse=True)[1].astype(np.int64).ravel()
    return codes.astype(np.int64)


def _heap_keys(predictions: np.ndarray, actuals: np.ndarray) -> tuple[np.ndarray, int]:
    """Python-int heap keys that compare like the tuples (prediction, actual).

    Key = prediction code, then label code, then one bit `actual > 0` (a function of
    the label, so it never changes a comparison; it lets the layout be read back). At
    most 31 + 31 + 1 bits.

    Returns:
      (keys, prediction_shift): int64 keys and the right shift that recovers the
      prediction code from a key.
    """
    prediction_codes = _order_codes(predictions)
    actual_codes = _order_codes(actuals)
    actual_bits = int(actual_codes.max()).bit_length() + 1
    keys = (prediction_codes << actual_bits) | (actual_codes << 1) | (actuals > 0)
    return keys, actual_bits


# ---------------------------------------------------------------------------------------
# Average precision of heap layouts, all lists at once.
# ---------------------------------------------------------------------------------------


def _average_precisions(
    order_codes: np.ndarray,
    positive: np.ndarray,
    lengths: np.ndarray,
    n: int | None,
    total_positives: np.ndarray,
    shuffled_lists: np.ndarray | None = None,
) -> np.ndarray:
    """The original's ap_at_n for several lists given in their heap (input) order.

    For each list: shuffle with `random.seed(0); random.sample(range(L), L)`, sort by
    prediction descending with a stable sort (ties keep the shuffled order), walk the
    first min(L, n) ranks and add `(positives so far / rank) / numpos` at each
    positive, in rank order. Only the order of tied items with different positivity can
    change the result, so lists without such ties skip the shuffle.

    Args:
      order_codes: int64 codes of the predictions (same order and ties), lists
        concatenated.
      positive: whether each item's label is > 0.
      lengths: the length of each list.
      n: the original's n (None for all ranks).
      total_positives: the original's total_num_positives of each list.
      shuffled_lists: which lists have mixed ties (computed if None).

    Returns:
      float64 array of APs; 0.0 for an empty list or one with no positives.
    """
    num_lists = len(lengths)
    aps = np.zeros(num_lists, dtype=np.float64)
    if len(order_codes) == 0:
        return aps
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    list_of_item = np.repeat(np.arange(num_lists), lengths)
    rank = np.arange(len(order_codes)) - starts[list_of_item]  # position within the list
    if shuffled_lists is None:
        shuffled_lists = _lists_with_mixed_ties(order_codes, positive, lengths)
    shuffled = np.arange(len(order_codes))
    if shuffled_lists.any():
        in_shuffled_lists = np.flatnonzero(np.repeat(shuffled_lists, lengths))
        shuffled[in_shuffled_lists] = starts[list_of_item[in_shuffled_lists]] + (
            _concatenated_permutations(lengths[shuffled_lists])
        )
    ranked = starts[list_of_item] + _stable_descending_order(
        order_codes[shuffled], list_of_item, rank, lengths
    )
    is_positive = positive[shuffled[ranked]]
    if n is not None:
        is_positive &= rank < n
    positives_so_far = np.cumsum(is_positive)
    positives_so_far -= (positives_so_far - is_positive)[starts[list_of_item]]
    numpos = np.asarray(total_positives, dtype=np.float64)
    if n is not None:
        numpos = np.minimum(numpos, n)
    has_positives = numpos != 0
    delta_recall = np.divide(1.0, numpos, out=np.zeros_like(numpos), where=has_positives)
    terms = (
        positives_so_far[is_positive].astype(np.float64)
        / (rank[is_positive] + 1).astype(np.float64)
        * delta_recall[list_of_item[is_positive]]
    )
    aps[:] = _sequential_sums(terms, list_of_item[is_positive], num_lists)
    aps[~has_positives] = 0.0
    return aps


def _lists_with_mixed_ties(
    order_codes: np.ndarray, positive: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Whether each list has a prediction value held by both a positive and a negative.

    Sorting (list, code, positive) packed in one int64 (at most 31 + 31 + 1 bits) puts
    each tie group's negatives just before its positives, so a mixed group shows as two
    neighbours that differ only in the positive bit.
    """
    mixed = np.zeros(len(lengths), dtype=bool)
    if len(order_codes) < 2:
        return mixed
    list_of_item = np.repeat(np.arange(len(lengths)), lengths)
    code_bits = max(int(order_codes.max()).bit_length(), 1)
    packed = np.sort(
        (list_of_item.astype(np.int64) << (code_bits + 1)) | (order_codes << 1) | positive
    )
    group, bit = packed >> 1, packed & 1
    neighbours = np.flatnonzero((group[1:] == group[:-1]) & (bit[1:] != bit[:-1]))
    mixed[group[neighbours] >> code_bits] = True
    return mixed


def _stable_descending_order(
    codes: np.ndarray, list_of_item: np.ndarray, rank: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Within each list, the positions sorted by code descending, ties in position order.

    Equivalent to Python's `sorted(range(L), key=..., reverse=True)`, which is stable.
    Done as one plain sort of packed int64 keys (list, inverted code, position) when
    they fit in 63 bits, else with np.lexsort (stable).

    Returns:
      The sorted positions, relative to the start of each list.
    """
    max_code = int(codes.max())
    code_bits = max(max_code.bit_length(), 1)
    position_bits = max(int(lengths.max() - 1).bit_length(), 1)
    list_bits = max(int(len(lengths) - 1).bit_length(), 1)
    inverted = max_code - codes
    if code_bits + position_bits + list_bits <= 63:
        packed = (
            (list_of_item.astype(np.int64) << (code_bits + position_bits))
            | (inverted << position_bits)
            | rank
        )
        return np.sort(packed) & ((1 << position_bits) - 1)
    order = np.lexsort((rank, inverted, list_of_item))
    return rank[order]


def _sequential_sums(values: np.ndarray, groups: np.ndarray, num_groups: int) -> np.ndarray:
    """Sums each group's values left to right, as a Python `+=` loop would.

    np.sum and np.add.reduceat use pairwise summation, which can differ in the last bit,
    so groups of similar size are laid out as rows of a zero-padded matrix and summed
    with np.cumsum along the rows (sequential); trailing zeros do not change a sum.

    Args:
      values: float64 values, grouped (groups non-decreasing), in summation order.
      groups: the group of each value.
      num_groups: the number of groups.

    Returns:
      float64 array of sums (0.0 for an empty group).
    """
    sums = np.zeros(num_groups, dtype=np.float64)
    if len(values) == 0:
        return sums
    counts = np.bincount(groups, minlength=num_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    width_class = np.zeros(num_groups, dtype=np.int64)
    nonempty = counts > 0
    width_class[nonempty] = np.frexp(counts[nonempty].astype(np.float64))[1]
    for width_bits in np.unique(width_class[nonempty]):
        members = np.flatnonzero(width_class == width_bits)
        member_counts = counts[members]
        width = int(member_counts.max())
        rows = np.repeat(np.arange(len(members)), member_counts)
        columns = np.arange(len(rows)) - np.repeat(
            np.cumsum(member_counts) - member_counts, member_counts
        )
        matrix = np.zeros((len(members), width), dtype=np.float64)
        matrix[rows, columns] = values[np.repeat(starts[members], member_counts) + columns]
        sums[members] = np.cumsum(matrix, axis=1)[:, -1]
    return sums


# ---------------------------------------------------------------------------------------
# Exact, vectorised `random.seed(0); random.sample(range(L), L)`.
# ---------------------------------------------------------------------------------------
#
# CPython's sample() (pool branch, always taken when k == n) does, for i = 0 .. L-1:
#     m = L - i;  j = randbelow(m);  result[i] = pool[j];  pool[j] = pool[m - 1]
# and randbelow(m) draws r = getrandbits(m.bit_length()) = word >> (32 - bits) from the
# next 32-bit Mersenne Twister word until r < m.
#
# Draws: the accepted r's depend on how many were accepted before (m shrinks by one per
# acceptance). Blocks of m/8 words are solved by fixed-point iteration: guess the
# acceptances, recompute them from the implied m's, repeat until nothing changes. Each
# round makes at least the first wrong guess right, and a change only matters for words
# near the threshold, so a few rounds suffice. The last _TAIL steps of each list use a
# step-by-step loop vectorised across lists.
#
# Pool: result[t] is the content of position j_t at step t. A position's content
# changes only when it is drawn (it then receives the content of the last slot), so
# result[t] = W(previous step that drew j_t), or j_t itself, where W(s), the content of
# the last slot at step s, is W(last earlier step that drew that slot) or the slot's
# own index. These chains are resolved with one sort of (position, step) pairs and
# pointer jumping.

_TAIL = 32
_CACHE_LIMIT = 1 << 22  # entries kept between calls, for the words and the permutations
_MT_WORDS = np.zeros(0, dtype=np.uint32)
_PERMUTATION_CACHE: dict[int, np.ndarray] = {}
_WORDS_USED: dict[int, int] = {}  # 32-bit words that sample(range(L), L) consumes
_SAMPLER_STATE = {"checked": False, "exact": False}


def _mersenne_words(count: int) -> np.ndarray:
    """The first `count` (or more) 32-bit outputs of the generator after random.seed(0)."""
    global _MT_WORDS
    if len(_MT_WORDS) >= count:
        return _MT_WORDS
    count = max(count, min(2 * len(_MT_WORDS), _CACHE_LIMIT), 1 << 16)
    stream = random.Random(0).getrandbits(32 * count).to_bytes(4 * count, "little")
    words = np.frombuffer(stream, dtype="<u4").astype(np.uint32)
    if count <= _CACHE_LIMIT:
        _MT_WORDS = words
    return words


def _bit_lengths(values: np.ndarray) -> np.ndarray:
    """int.bit_length() of positive int64 values (< 2**53)."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)


def _accepted_draws(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The j's that random.sample(range(L), L) draws after seed(0), for several L.

    Args:
      sizes: positive int64 list lengths.

    Returns:
      (draws, words_used): draws concatenated size after size; the number of 32-bit
      words each sample consumed.
    """
    num = len(sizes)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    draws = np.empty(int(sizes.sum()), dtype=np.int64)
    done = np.zeros(num, dtype=np.int64)  # accepted draws so far
    used = np.zeros(num, dtype=np.int64)  # words consumed so far
    words = _mersenne_words(int(1.5 * sizes.max()) + 4 * _TAIL)
    while True:
        active = np.flatnonzero(sizes - done > _TAIL)
        if len(active) == 0:
            break
        remaining = sizes[active] - done[active]
        block = np.minimum(np.maximum(remaining >> 3, 16), remaining - _TAIL)
        if int((used[active] + block).max()) > len(words):
            words = _mersenne_words(int((used[active] + block).max()) * 2)
        accepted, values, ranks = _solve_draw_blocks(words, used[active], remaining, block)
        hits = np.flatnonzero(accepted)
        first_slot = offsets[active] + done[active]
        if len(active) > 1:
            first_slot = np.repeat(first_slot, block)[hits]
        draws[first_slot + ranks[hits]] = values[hits]
        done[active] += np.diff(np.searchsorted(hits, np.concatenate(([0], np.cumsum(block)))))
        used[active] += block
    while True:
        active = np.flatnonzero(done < sizes)
        if len(active) == 0:
            break
        if int(used[active].max()) >= len(words):
            words = _mersenne_words(2 * len(words))
        remaining = sizes[active] - done[active]
        values = words[used[active]] >> (32 - _bit_lengths(remaining))
        accepted = values < remaining
        draws[offsets[active][accepted] + done[active][accepted]] = values[accepted]
        done[active] += accepted
        used[active] += 1
    return draws, used


def _solve_draw_blocks(
    words: np.ndarray, first_word: np.ndarray, remaining: np.ndarray, block: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decides, for blocks of words, which are accepted by the rejection sampling.

    Each block starts with `remaining` = m and spans `block` words (block <= m / 8, so
    m keeps a bit length of m's or one less, and stays above _TAIL).

    Returns:
      (accepted, values, ranks) per word of the concatenated blocks: whether it is
      accepted, the drawn value r, and the number of accepted words before it in its
      block.
    """
    bits = _bit_lengths(remaining)
    block_starts = np.cumsum(block) - block
    if len(block) == 1:  # one list: scalars broadcast, no per-word gathers
        block_of = np.zeros(1, dtype=np.int64)
        position = np.arange(block[0])
        word = words[first_word[0] : first_word[0] + block[0]]
    else:
        block_of = np.repeat(np.arange(len(block)), block)
        position = np.arange(len(block_of)) - block_starts[block_of]
        word = words[first_word[block_of] + position]
    start_m = remaining[block_of]
    half = np.left_shift(1, bits - 1)[block_of]
    shift = (32 - bits)[block_of]
    # First guess: a word is accepted with probability m / 2**bits.
    before = (position * (remaining / np.exp2(bits))[block_of]).astype(np.int64)
    accepted = None
    while True:
        m = start_m - before
        values = word >> (shift + (m < half))
        now_accepted = values < m
        if accepted is not None and np.array_equal(now_accepted, accepted):
            return accepted, values, before
        accepted = now_accepted
        before = np.cumsum(accepted) - accepted
        if len(block) > 1:
            before -= before[block_starts][block_of]


def _pool_results(draws: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Turns the draws into sample()'s results (see the comment above), all lists at once.

    Positions and steps are numbered globally (list after list). The last slot of step s
    is position 2 * start + L - 1 - s, and that map is its own inverse, so it also gives
    the step at which a position is the last slot.
    """
    total = len(draws)
    starts = np.cumsum(sizes) - sizes
    start_of = np.repeat(starts, sizes)
    step = np.arange(total, dtype=np.int64)
    last_slot = np.repeat(2 * starts + sizes - 1, sizes) - step
    step_bits = max(total.bit_length(), 1)
    events = np.sort(((draws + start_of) << step_bits) | step)  # by position, then step
    event_step = events & ((1 << step_bits) - 1)
    event_position = events >> step_bits
    group_ends = np.flatnonzero(event_position[1:] != event_position[:-1])
    previous_draw = np.empty(total, dtype=np.int64)  # previous step drawing the position
    previous_draw[0] = -1
    previous_draw[1:] = event_step[:-1]
    previous_draw[group_ends + 1] = -1
    # The last step that wrote into each position is its last draw, unless that draw is
    # of the last slot itself (which moves nothing; it is always a position's final one).
    last_events = np.append(group_ends, total - 1)
    position, writer = event_position[last_events], event_step[last_events]
    draws_itself = np.flatnonzero(last_slot[writer] == position)
    writer[draws_itself] = previous_draw[last_events[draws_itself]]
    root = np.full(total, -1, dtype=np.int64)  # step whose last slot content is resolved
    root[last_slot[position]] = writer
    unwritten = np.flatnonzero(root < 0)
    root[unwritten] = unwritten
    while True:
        next_root = root[root]
        if np.array_equal(next_root, root):
            break
        root = next_root
    last_slot_content = last_slot[root] - start_of[root]  # a slot's own index, list-relative
    results = draws.copy()
    drawn_before = np.flatnonzero(previous_draw >= 0)
    results[event_step[drawn_before]] = last_slot_content[previous_draw[drawn_before]]
    return results


def _vectorised_samples(sizes: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """sample(range(L), L) after seed(0) for distinct positive sizes, and words used."""
    draws, used = _accepted_draws(sizes)
    _WORDS_USED.update(zip(sizes.tolist(), used.tolist(), strict=True))
    results = _pool_results(draws, sizes)
    return np.split(results, np.cumsum(sizes)[:-1]), used


def _sampler_is_exact() -> bool:
    """Checks once that the vectorised sampler equals this Python's random.sample."""
    if not _SAMPLER_STATE["checked"]:
        sizes = np.array([*range(1, _TAIL + 8), 300, 1500], dtype=np.int64)
        samples, _ = _vectorised_samples(sizes)
        _SAMPLER_STATE["exact"] = all(
            sample.tolist() == random.Random(0).sample(range(size), size)
            for sample, size in zip(samples, sizes.tolist(), strict=True)
        )
        _SAMPLER_STATE["checked"] = True
    return _SAMPLER_STATE["exact"]


def _sample_permutations(sizes: Sequence[int]) -> dict[int, np.ndarray]:
    """Returns {L: array(random.seed(0); random.sample(range(L), L))} for the sizes."""
    requested = {int(size) for size in sizes if size > 0}
    found = {size: _PERMUTATION_CACHE[size] for size in requested & _PERMUTATION_CACHE.keys()}
    missing = sorted(requested - found.keys())
    if missing:
        if _sampler_is_exact():
            samples, _ = _vectorised_samples(np.array(missing, dtype=np.int64))
        else:
            samples = [np.array(random.Random(0).sample(range(s), s)) for s in missing]
        found.update(zip(missing, (sample.astype(np.int32) for sample in samples), strict=True))
        cached = sum(len(permutation) for permutation in _PERMUTATION_CACHE.values())
        if cached + sum(missing) > _CACHE_LIMIT:
            _PERMUTATION_CACHE.clear()
        if sum(missing) <= _CACHE_LIMIT:
            _PERMUTATION_CACHE.update((size, found[size]) for size in missing)
    found.update({int(size): np.zeros(0, dtype=np.int32) for size in sizes if size <= 0})
    return found


def _concatenated_permutations(lengths: np.ndarray) -> np.ndarray:
    """The sample permutation of each length, concatenated (positions within each list)."""
    permutations = _sample_permutations(np.unique(lengths).tolist())
    pieces = [permutations[length] for length in lengths.tolist() if length > 0]
    return np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, dtype=np.int64)


def _leave_global_random_as_original(size: int) -> None:
    """Leaves the global `random` state as the original's shuffle of `size` items does.

    The original calls random.seed(0) and then random.sample(range(size), size) on the
    global generator, so code that draws random numbers afterwards sees that state:
    seed(0) followed by the 32-bit words the sample consumed.
    """
    random.seed(0)
    if size <= 0:
        return
    if not _sampler_is_exact():
        random.sample(range(size), size)
        return
    if size not in _WORDS_USED:
        _WORDS_USED[size] = int(_accepted_draws(np.array([size], dtype=np.int64))[1][0])
    random.getrandbits(32 * _WORDS_USED[size])
