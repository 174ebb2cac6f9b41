"""Metrics: each vectorised result equals a brute-force transcription of the original.

The brute-force functions below follow google/youtube-8m line by line: one heapq push
per item, a Python loop per video, random.seed(0) + random.sample before a stable sort.
Labels are read as float64 there too (the project's decision). The data are tie-heavy
(scores rounded to one or two decimals), so the heap layout, the seeded shuffle and
argpartition's choice among tied classes all matter, and results must be equal, not
close.
"""

import heapq
import random
import threading

import numpy as np
import pytest

import average_precision_calculator as apc
import eval_util
import mean_average_precision_calculator as mapc

# ---------------------------------------------------------------------------------------
# Brute force: the original's algorithms, written the straightforward way.
# ---------------------------------------------------------------------------------------


def bf_ap_at_n(predictions, actuals, n=20, total_num_positives=None):
    predictions = np.array(predictions)
    actuals = np.array(actuals)
    random.seed(0)
    order = random.sample(range(len(predictions)), len(predictions))
    predictions, actuals = predictions[order], actuals[order]
    ranked = sorted(range(len(predictions)), key=lambda i: predictions[i], reverse=True)
    numpos = np.size(np.where(actuals > 0)) if total_num_positives is None else total_num_positives
    if numpos == 0:
        return 0
    if n is not None:
        numpos = min(numpos, n)
    ap, poscount = 0.0, 0.0
    for i in range(len(ranked) if n is None else min(len(ranked), n)):
        if actuals[ranked[i]] > 0:
            poscount += 1
            ap += poscount / (i + 1) * (1.0 / numpos)
    return ap


class BruteForceAP:
    def __init__(self, top_n=None):
        self.top_n, self.total_positives, self.heap = top_n, 0, []

    def accumulate(self, predictions, actuals, num_positives=None):
        if num_positives is None:
            self.total_positives += np.size(np.where(np.array(actuals) > 1e-5))
        else:
            self.total_positives += num_positives
        for i in range(len(predictions)):
            if self.top_n is None or len(self.heap) < self.top_n:
                heapq.heappush(self.heap, (predictions[i], actuals[i]))
            elif predictions[i] > self.heap[0][0]:
                heapq.heappop(self.heap)
                heapq.heappush(self.heap, (predictions[i], actuals[i]))

    def peek(self):
        if not self.heap:
            return 0
        columns = np.array(list(zip(*self.heap, strict=True)))
        return bf_ap_at_n(columns[0], columns[1], self.top_n, self.total_positives)


def bf_top_k_by_class(predictions, labels, k=20):
    k = min(k, predictions.shape[1])
    out_predictions = [[] for _ in range(predictions.shape[1])]
    out_labels = [[] for _ in range(predictions.shape[1])]
    for video in range(predictions.shape[0]):
        for index in np.argpartition(predictions[video], -k)[-k:]:
            out_predictions[index].append(predictions[video][index])
            out_labels[index].append(labels[video][index])
    positives = [np.sum(labels[:, c]) for c in range(predictions.shape[1])]
    return out_predictions, out_labels, positives


def bf_hit_at_one(predictions, labels):
    top = np.argmax(predictions, 1)
    return np.average(labels[np.arange(labels.shape[0]), top])


def bf_perr(predictions, labels):
    aggregated = 0.0
    for row in range(labels.shape[0]):
        num_labels = int(np.sum(labels[row]))
        top = np.argpartition(predictions[row], -num_labels)[-num_labels:]
        precision = 0.0
        for index in top:
            if predictions[row][index] > 0:
                precision += labels[row][index]
        aggregated += precision / top.size
    return aggregated / labels.shape[0]


class BruteForceEvaluationMetrics:
    def __init__(self, num_class, top_k, top_n=None):
        self.classes = [BruteForceAP(top_n) for _ in range(num_class)]
        self.overall = BruteForceAP()
        self.top_k, self.sums, self.num_examples = top_k, [0.0, 0.0, 0.0], 0

    def accumulate(self, predictions, labels, loss):
        labels = labels.astype(np.float64)
        batch = {
            "hit_at_one": bf_hit_at_one(predictions, labels),
            "perr": bf_perr(predictions, labels),
            "loss": np.mean(loss.astype(np.float64)),
        }
        scores, actuals, positives = bf_top_k_by_class(predictions, labels, self.top_k)
        for calculator, s, a, p in zip(self.classes, scores, actuals, positives, strict=True):
            calculator.accumulate(s, a, p)
        flat_scores = [x for per_class in scores for x in per_class]
        flat_actuals = [x for per_class in actuals for x in per_class]
        self.overall.accumulate(flat_scores, flat_actuals, sum(positives))
        self.num_examples += labels.shape[0]
        for i, key in enumerate(("hit_at_one", "perr", "loss")):
            self.sums[i] += batch[key] * labels.shape[0]
        return batch

    def get(self):
        return {
            "avg_hit_at_one": self.sums[0] / self.num_examples,
            "avg_perr": self.sums[1] / self.num_examples,
            "avg_loss": self.sums[2] / self.num_examples,
            "aps": [c.peek() for c in self.classes if c.total_positives > 0],
            "gap": self.overall.peek(),
        }


# ---------------------------------------------------------------------------------------
# Tie-heavy data.
# ---------------------------------------------------------------------------------------


def tied_scores(rng, shape, decimals=1):
    """float32 scores in [0, 1] with few distinct values (many ties)."""
    return np.round(rng.random(shape), decimals).astype(np.float32)


def video_batch(rng, num_videos, num_classes, labels_per_video=3, decimals=2):
    """(predictions, labels, loss) like eval.py's, with ties at every rank."""
    labels = np.zeros((num_videos, num_classes), dtype=np.float32)
    for video in range(num_videos):
        count = rng.integers(0, labels_per_video + 1)
        labels[video, rng.choice(num_classes, count, replace=False)] = 1.0
    noise = rng.exponential(0.1, (num_videos, num_classes))
    scores = np.where(labels > 0, rng.uniform(0.0, 1.0, labels.shape), np.minimum(noise, 1.0))
    predictions = np.round(scores, decimals).astype(np.float32)
    return predictions, labels, rng.random(num_videos, dtype=np.float32)


# ---------------------------------------------------------------------------------------
# The seeded shuffle.
# ---------------------------------------------------------------------------------------


def test_sample_emulation_equals_random_sample_after_seed_0():
    sizes = np.array([1, 2, 3, 31, 32, 33, 64, 65, 100, 257, 1000, 4096, 20011], dtype=np.int64)
    samples, words = apc._vectorised_samples(sizes)
    for size, sample, used in zip(sizes.tolist(), samples, words.tolist(), strict=True):
        generator = random.Random(0)
        assert sample.tolist() == generator.sample(range(size), size)
        replay = random.Random(0)
        replay.getrandbits(32 * used)
        assert replay.getstate() == generator.getstate()  # same number of words consumed
    assert apc._sampler_is_exact()


def test_peek_leaves_global_random_state_like_original():
    rng = np.random.default_rng(1)
    scores, labels = tied_scores(rng, 300), (rng.random(300) < 0.3).astype(np.float64)
    calculator = apc.AveragePrecisionCalculator()
    calculator.accumulate(scores, labels)
    random.seed(123)
    calculator.peek_ap_at_n()
    ported = random.random()
    brute = BruteForceAP()
    brute.accumulate(scores, labels)
    random.seed(123)
    brute.peek()
    assert ported == random.random()


# ---------------------------------------------------------------------------------------
# AveragePrecisionCalculator.
# ---------------------------------------------------------------------------------------


def test_ap_of_hand_checked_list():
    # Ranks 1 and 3 are positive: (1/1 + 2/3) / 2.
    ap = apc.AveragePrecisionCalculator.ap(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]))
    assert ap == 1.0 / 1 * 0.5 + 2.0 / 3 * 0.5


@pytest.mark.parametrize("n", [None, 1, 7, 40, 1000])
@pytest.mark.parametrize("given_total", [False, True])
def test_ap_at_n_equals_bruteforce_with_ties(n, given_total):
    rng = np.random.default_rng(2)
    for _ in range(20):
        length = int(rng.integers(0, 120))
        scores = tied_scores(rng, length, decimals=int(rng.integers(0, 2)))
        labels = (rng.random(length) < 0.4).astype(np.float64)
        total = float(labels.sum() + rng.integers(0, 3)) if given_total else None
        expected = bf_ap_at_n(scores, labels, n, total)
        assert apc.AveragePrecisionCalculator.ap_at_n(scores, labels, n, total) == expected


def test_ap_at_n_with_full_precision_float64_scores_and_duplicates():
    # Wide float64 codes take the dense-rank paths (np.unique, np.lexsort).
    rng = np.random.default_rng(3)
    distinct = rng.standard_normal(50) * 1e6
    for scores, labels in (
        (rng.choice(distinct, 400), rng.choice([0.0, 0.5, 1.0, 2.0], 400)),
        (rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], 400), rng.choice(distinct, 400)),
    ):
        expected = bf_ap_at_n(scores, labels, None)
        assert apc.AveragePrecisionCalculator.ap(scores, labels) == expected
        calculator, brute = apc.AveragePrecisionCalculator(), BruteForceAP()
        calculator.accumulate(scores, labels)
        brute.accumulate(scores, labels)
        assert calculator.peek_ap_at_n() == brute.peek()


def test_descending_order_with_codes_too_wide_to_pack_matches_sorted():
    # Codes of 60 bits cannot be packed with list and position: the np.lexsort path.
    rng = np.random.default_rng(14)
    lengths = np.array([5, 0, 40, 17])
    codes = rng.integers(0, 4, lengths.sum())
    list_of_item = np.repeat(np.arange(len(lengths)), lengths)
    rank = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    narrow = apc._stable_descending_order(codes, list_of_item, rank, lengths)
    wide = apc._stable_descending_order(codes << 58, list_of_item, rank, lengths)
    expected = np.concatenate(
        [
            sorted(range(length), key=lambda i, c=codes[list_of_item == j]: c[i], reverse=True)
            for j, length in enumerate(lengths)
        ]
    )
    assert narrow.tolist() == expected.tolist() == wide.tolist()


@pytest.mark.parametrize("top_n", [None, 1, 5, 60])
def test_accumulated_ap_equals_bruteforce_heap_with_ties(top_n):
    rng = np.random.default_rng(4)
    for trial in range(15):
        calculator, brute = apc.AveragePrecisionCalculator(top_n), BruteForceAP(top_n)
        for _ in range(int(rng.integers(1, 5))):
            length = int(rng.integers(0, 150))
            scores = tied_scores(rng, length)
            labels = (rng.random(length) < 0.3) * rng.choice([1.0, 0.5, 1e-6], length)
            given = float(labels.sum() + 1) if trial % 2 else None
            calculator.accumulate(scores, labels, given)
            brute.accumulate(scores, labels, given)
        assert calculator.heap_size == len(brute.heap)
        assert calculator.num_accumulated_positives == brute.total_positives
        assert calculator.peek_ap_at_n() == brute.peek()


def test_empty_calculator_and_list_without_positives_give_zero():
    calculator = apc.AveragePrecisionCalculator()
    assert calculator.peek_ap_at_n() == 0
    calculator.accumulate(np.array([0.5, 0.5]), np.array([0.0, 0.0]))
    assert calculator.peek_ap_at_n() == 0
    calculator.clear()
    assert calculator.heap_size == 0 and calculator.num_accumulated_positives == 0


@pytest.mark.parametrize("top_n", [-1, 2.0, "3"])
def test_top_n_must_be_a_non_negative_int(top_n):
    with pytest.raises(ValueError, match="top_n must be a positive integer or None."):
        apc.AveragePrecisionCalculator(top_n)
    with pytest.raises(ValueError, match="top_n must be a positive integer or None."):
        mapc.MeanAveragePrecisionCalculator(5, top_n=top_n)


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="the shape of predictions and actuals does not match."):
        apc.AveragePrecisionCalculator().accumulate([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="the shape of predictions and actuals does not match."):
        apc.AveragePrecisionCalculator.ap_at_n([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="the shape of predictions and actuals does not match."):
        mapc.MeanAveragePrecisionCalculator(2).accumulate([[0.1], [0.2]], [[1], []])


def test_negative_or_non_numeric_num_positives_raises():
    message = "'num_positives' was provided but it was a negative number."
    with pytest.raises(ValueError, match=message):
        apc.AveragePrecisionCalculator().accumulate([0.1], [1], num_positives=-1)
    with pytest.raises(ValueError, match=message):
        apc.AveragePrecisionCalculator().accumulate([0.1], [1], num_positives="2")
    with pytest.raises(ValueError, match=message):
        mapc.MeanAveragePrecisionCalculator(2).accumulate([[0.1], [0.2]], [[1], [0]], [1, -2])


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_ap_at_n_rejects_n_that_is_not_a_positive_int(n):
    with pytest.raises(ValueError, match="n must be 'None' or a positive integer."):
        apc.AveragePrecisionCalculator.ap_at_n([0.1], [1], n=n)


def test_dense_ranks_equal_numpy_unique():
    rng = np.random.default_rng(18)
    narrow = rng.integers(0, 1 << 36, 50)[rng.integers(0, 50, 5000)]
    wide = rng.integers(0, 1 << 62, 300)[rng.integers(0, 300, 2000)]
    for values in (narrow, wide, np.array([7]), np.zeros(0, dtype=np.int64)):
        distinct, ranks = apc._dense_ranks(values)
        expected_distinct, expected_ranks = np.unique(values, return_inverse=True)
        assert np.array_equal(distinct, expected_distinct)
        assert np.array_equal(ranks, expected_ranks.ravel())


# ---------------------------------------------------------------------------------------
# MeanAveragePrecisionCalculator.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("top_n", [None, 3])
@pytest.mark.parametrize("filter_empty_classes", [True, False])
def test_map_equals_bruteforce_per_class_with_ties_and_empty_classes(top_n, filter_empty_classes):
    rng = np.random.default_rng(5)
    num_class = 12
    calculator = mapc.MeanAveragePrecisionCalculator(num_class, filter_empty_classes, top_n)
    brutes = [BruteForceAP(top_n) for _ in range(num_class)]
    for batch in range(3):
        lengths = rng.integers(0, 30, num_class) * (rng.random(num_class) < 0.8)
        scores = [tied_scores(rng, length) for length in lengths]
        labels = [(rng.random(length) < 0.3).astype(np.float64) for length in lengths]
        labels[0] = np.zeros(lengths[0])  # class 0 never has a positive
        given = None if batch == 1 else [float(a.sum()) for a in labels]
        calculator.accumulate(scores, labels, given)
        for c in range(num_class):
            brutes[c].accumulate(scores[c], labels[c], None if given is None else given[c])
    expected = [b.peek() for b in brutes if not filter_empty_classes or b.total_positives > 0]
    assert calculator.peek_map_at_n() == expected
    assert not calculator.is_empty()
    calculator.clear()
    assert calculator.is_empty()


def test_map_num_class_must_be_an_int_above_one():
    for num_class in (1, 0, 3.0):
        with pytest.raises(ValueError, match="num_class must be a positive integer."):
            mapc.MeanAveragePrecisionCalculator(num_class)


# ---------------------------------------------------------------------------------------
# eval_util functions.
# ---------------------------------------------------------------------------------------


def test_hit_at_one_equals_bruteforce_first_index_on_ties():
    rng = np.random.default_rng(6)
    predictions, labels, _ = video_batch(rng, 300, 40, decimals=1)
    labels64 = labels.astype(np.float64)
    assert eval_util.calculate_hit_at_one(predictions, labels) == bf_hit_at_one(
        predictions, labels64
    )


@pytest.mark.parametrize("decimals", [1, 2])
def test_perr_equals_bruteforce_with_ties(decimals):
    rng = np.random.default_rng(7)
    predictions, labels, _ = video_batch(rng, 400, 30, labels_per_video=25, decimals=decimals)
    predictions[:5] = 0.0  # a video whose every score ties (and is not > 0)
    expected = bf_perr(predictions, labels.astype(np.float64))
    assert eval_util.calculate_precision_at_equal_recall_rate(predictions, labels) == expected


def test_perr_with_fractional_labels_equals_bruteforce():
    rng = np.random.default_rng(8)
    predictions = tied_scores(rng, (200, 25))
    labels = rng.choice([0.0, 0.0, 0.0, 0.3, 0.5, 1.0], (200, 25)).astype(np.float32)
    expected = bf_perr(predictions, labels.astype(np.float64))
    assert eval_util.calculate_precision_at_equal_recall_rate(predictions, labels) == expected


@pytest.mark.parametrize("k", [1, 5, 20, 50])
def test_top_k_by_class_equals_bruteforce_including_k_above_num_classes(k):
    rng = np.random.default_rng(9)
    predictions, labels, _ = video_batch(rng, 100, 30, decimals=1)
    got = eval_util.top_k_by_class(predictions, labels, k)
    expected = bf_top_k_by_class(predictions, labels.astype(np.float64), k)
    assert got[0] == [[float(x) for x in per_class] for per_class in expected[0]]
    assert got[1] == [[float(x) for x in per_class] for per_class in expected[1]]
    assert got[2] == [float(x) for x in expected[2]]


@pytest.mark.parametrize("top_k", [3, 20, 100])
def test_gap_equals_bruteforce_with_ties(top_k):
    rng = np.random.default_rng(10)
    predictions, labels, _ = video_batch(rng, 250, 60)
    scores, actuals, positives = bf_top_k_by_class(predictions, labels.astype(np.float64), top_k)
    brute = BruteForceAP()
    brute.accumulate(
        [x for per_class in scores for x in per_class],
        [x for per_class in actuals for x in per_class],
        sum(positives),
    )
    assert eval_util.calculate_gap(predictions, labels, top_k) == brute.peek()


def test_k_must_be_positive():
    predictions, labels = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    for call in (
        lambda: eval_util.top_k_by_class(predictions, labels, 0),
        lambda: eval_util.calculate_gap(predictions, labels, -1),
        lambda: eval_util.EvaluationMetrics(3, 0, None).accumulate(
            predictions, labels, np.zeros(2)
        ),
    ):
        with pytest.raises(ValueError, match="k must be a positive integer."):
            call()


def test_flatten_merges_lists_in_order():
    assert eval_util.flatten([[1, 2], [], [3]]) == [1, 2, 3]


# ---------------------------------------------------------------------------------------
# Row chunks run in parallel threads.
# ---------------------------------------------------------------------------------------


@pytest.fixture
def row_chunks(monkeypatch):
    """Cuts even tiny batches into up to 3 row chunks (and argpartition's blocks to 7
    rows), and records each chunk's thread."""
    monkeypatch.setattr(eval_util, "_MAX_CHUNKS", 3)
    monkeypatch.setattr(eval_util, "_MIN_CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(eval_util, "_ARGPARTITION_ROWS", 7)
    threads = []
    map_row_chunks = eval_util._map_row_chunks

    def recording(function, num_rows, row_size):
        def recorded(start, stop):
            threads.append(threading.current_thread())
            return function(start, stop)

        return map_row_chunks(recorded, num_rows, row_size)

    monkeypatch.setattr(eval_util, "_map_row_chunks", recording)
    return threads


def test_map_row_chunks_covers_the_rows_in_order(monkeypatch):
    monkeypatch.setattr(eval_util, "_MAX_CHUNKS", 3)
    monkeypatch.setattr(eval_util, "_MIN_CHUNK_ELEMENTS", 10)
    ranges = eval_util._map_row_chunks(lambda start, stop: (start, stop), 10, 5)
    assert ranges == [(0, 3), (3, 6), (6, 10)]
    assert eval_util._map_row_chunks(lambda start, stop: (start, stop), 2, 5) == [(0, 2)]
    assert eval_util._map_row_chunks(lambda start, stop: (start, stop), 2, 500) == [(0, 1), (1, 2)]
    assert eval_util._map_row_chunks(lambda start, stop: (start, stop), 0, 500) == [(0, 0)]


def test_map_row_chunks_raises_a_chunks_error(monkeypatch):
    monkeypatch.setattr(eval_util, "_MAX_CHUNKS", 3)
    monkeypatch.setattr(eval_util, "_MIN_CHUNK_ELEMENTS", 1)

    def failing(start, stop):
        if start > 0:
            raise ZeroDivisionError("float division by zero")
        return start

    with pytest.raises(ZeroDivisionError):
        eval_util._map_row_chunks(failing, 9, 1)


def test_thread_pool_is_created_again_after_fork():
    executor = eval_util._executor()
    assert eval_util._executor() is executor
    eval_util._forget_executor_after_fork()
    assert eval_util._executor() is not executor
    executor.shutdown()


@pytest.mark.parametrize("top_k", [1, 3, 20])
def test_evaluation_metrics_in_row_chunks_equal_one_chunk_and_bruteforce(row_chunks, top_k):
    # Scores with one decimal tie at every video's k-th place and at its n-th place for
    # PERR (a positive and negatives with the same score), so argpartition's choice of
    # tied classes decides the results; batches of 1 and 2 videos have fewer rows than
    # chunks.
    rng = np.random.default_rng(16)
    batches = [
        video_batch(rng, size, 40, labels_per_video=6, decimals=1) for size in (50, 1, 2, 31)
    ]
    k_th_and_next = np.partition(batches[0][0], [-top_k - 1, -top_k], axis=1)
    assert (k_th_and_next[:, -top_k - 1] == k_th_and_next[:, -top_k]).mean() > 0.2
    results = {}
    for max_chunks in (1, 3):
        eval_util._MAX_CHUNKS = max_chunks
        metrics = eval_util.EvaluationMetrics(40, top_k, None)
        per_batch = [metrics.accumulate(*batch) for batch in batches]
        results[max_chunks] = (per_batch, metrics.get())
    brute = BruteForceEvaluationMetrics(40, top_k)
    expected = ([brute.accumulate(*batch) for batch in batches], brute.get())
    assert results[3] == results[1] == expected
    assert any(thread is not threading.main_thread() for thread in row_chunks)


def test_batch_functions_in_row_chunks_equal_bruteforce(row_chunks):
    rng = np.random.default_rng(17)
    predictions, labels, _ = video_batch(rng, 120, 30, labels_per_video=25, decimals=1)
    labels64 = labels.astype(np.float64)
    assert eval_util.calculate_precision_at_equal_recall_rate(predictions, labels) == bf_perr(
        predictions, labels64
    )
    scores, actuals, positives = bf_top_k_by_class(predictions, labels64, 5)
    got = eval_util.top_k_by_class(predictions, labels, 5)
    assert got[0] == [[float(x) for x in per_class] for per_class in scores]
    assert got[1] == [[float(x) for x in per_class] for per_class in actuals]
    brute = BruteForceAP()
    brute.accumulate(
        [x for per_class in scores for x in per_class],
        [x for per_class in actuals for x in per_class],
        sum(positives),
    )
    assert eval_util.calculate_gap(predictions, labels, 5) == brute.peek()
    assert len(row_chunks) > 3


# ---------------------------------------------------------------------------------------
# EvaluationMetrics.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("top_k", "top_n"), [(20, None), (4, None), (6, 10), (500, None)])
def test_evaluation_metrics_equal_bruteforce_over_several_batches(top_k, top_n):
    rng = np.random.default_rng(11)
    num_class = 80
    metrics = eval_util.EvaluationMetrics(num_class, top_k, top_n)
    brute = BruteForceEvaluationMetrics(num_class, top_k, top_n)
    for batch_size in (64, 1, 100, 37):
        batch = video_batch(rng, batch_size, num_class, labels_per_video=6)
        assert metrics.accumulate(*batch) == brute.accumulate(*batch)
    assert metrics.get() == brute.get()


def test_evaluation_metrics_equal_bruteforce_with_fractional_labels():
    rng = np.random.default_rng(15)
    metrics = eval_util.EvaluationMetrics(30, 5, None)
    brute = BruteForceEvaluationMetrics(30, 5)
    for _ in range(3):
        predictions = tied_scores(rng, (50, 30))
        labels = rng.choice([0.0] * 8 + [0.25, 0.5, 1.0], (50, 30)).astype(np.float32)
        loss = rng.random(50, dtype=np.float32)
        assert metrics.accumulate(predictions, labels, loss) == brute.accumulate(
            predictions, labels, loss
        )
    assert metrics.get() == brute.get()


def test_evaluation_metrics_keep_only_top_k_entries_per_video():
    rng = np.random.default_rng(12)
    metrics = eval_util.EvaluationMetrics(50, 7, None)
    for _ in range(3):
        metrics.accumulate(*video_batch(rng, 40, 50))
    assert metrics.global_ap_calculator.heap_size == 3 * 40 * 7
    assert metrics.num_examples == 120


def test_get_without_examples_raises_and_clear_resets():
    rng = np.random.default_rng(13)
    metrics = eval_util.EvaluationMetrics(10, 3, None)
    with pytest.raises(ValueError, match="total_sample must be positive."):
        metrics.get()
    metrics.accumulate(*video_batch(rng, 8, 10))
    metrics.clear()
    assert metrics.map_calculator.is_empty()
    assert metrics.global_ap_calculator.heap_size == 0
    assert (metrics.sum_hit_at_one, metrics.sum_perr, metrics.sum_loss) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="total_sample must be positive."):
        metrics.get()


def test_evaluation_metrics_num_class_must_exceed_one():
    with pytest.raises(ValueError, match="num_class must be a positive integer."):
        eval_util.EvaluationMetrics(1, 20, None)


def test_metric_modules_do_not_import_tensorflow():
    for module in (apc, mapc, eval_util):
        source = open(module.__file__).read()
        assert "import tensorflow" not in source and "from tensorflow" not in source
