"""Metrics: each vectorised result equals the original's, computed by its transcription.

benchmarks/original_metrics.py follows google/youtube-8m line by line: one heapq push
per item, a Python loop per video, random.seed(0) + random.sample before a stable sort.
Labels are read as float64 there too (the project's decision). The data are tie-heavy
(scores rounded to one or two decimals), so the heap layout, the seeded shuffle and
argpartition's choice among tied classes all matter, and results must be equal, not
close.
"""

import random

import numpy as np
import pytest

import average_precision_calculator as apc
import eval_util
import mean_average_precision_calculator as mapc
from benchmarks import original_metrics as original

pytestmark = pytest.mark.fast

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


def test_seeded_shuffle_is_random_sample_after_seed_0():
    for size in (1, 2, 3, 33, 1000, 20011):
        random.seed(0)
        expected = random.sample(range(size), size)
        assert apc.seeded_shuffle(size).tolist() == expected
        assert apc.seeded_shuffle(size).tolist() == expected  # cached


def test_shuffle_cache_drops_least_recently_used_beyond_its_size(monkeypatch):
    monkeypatch.setattr(apc, "_SHUFFLE_CACHE_POSITIONS", 100)
    monkeypatch.setattr(apc, "_shuffles", apc.collections.OrderedDict())
    monkeypatch.setattr(apc, "_cached_positions", 0)
    for size in (40, 50, 40, 30, 200):
        assert apc.seeded_shuffle(size).tolist() == random.Random(0).sample(range(size), size)
    assert list(apc._shuffles) == [40, 30] and apc._cached_positions == 70


def test_global_random_state_is_untouched_by_peek_ap_at_n_and_ap_at_n():
    # The original reseeded the global generator (random.seed(0)) as a side effect;
    # the port shuffles with a private random.Random(0) instead.
    rng = np.random.default_rng(1)
    scores, labels = tied_scores(rng, 300), (rng.random(300) < 0.3).astype(np.float64)
    calculator = apc.AveragePrecisionCalculator()
    calculator.accumulate(scores, labels)
    metrics = eval_util.EvaluationMetrics(30, 5, None)
    metrics.accumulate(*video_batch(rng, 40, 30))
    random.seed(123)
    state = random.getstate()
    calculator.peek_ap_at_n()
    apc.AveragePrecisionCalculator.ap_at_n(scores, labels, n=None)
    metrics.get()
    assert random.getstate() == state


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
        expected = original.AveragePrecisionCalculator.ap_at_n(scores, labels, n, total)
        assert apc.AveragePrecisionCalculator.ap_at_n(scores, labels, n, total) == expected


def test_ap_at_n_with_full_precision_float64_scores_and_duplicates():
    # Many distinct values: wide dense ranks and sort keys (no 16-bit radix sort).
    rng = np.random.default_rng(3)
    distinct = rng.standard_normal(50) * 1e6
    for scores, labels in (
        (rng.choice(distinct, 400), rng.choice([0.0, 0.5, 1.0, 2.0], 400)),
        (rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], 400), rng.choice(distinct, 400)),
    ):
        expected = original.AveragePrecisionCalculator.ap_at_n(scores, labels, None)
        assert apc.AveragePrecisionCalculator.ap(scores, labels) == expected
        calculator, brute = apc.AveragePrecisionCalculator(), original.AveragePrecisionCalculator()
        calculator.accumulate(scores, labels)
        brute.accumulate(scores, labels)
        assert calculator.peek_ap_at_n() == brute.peek_ap_at_n()


@pytest.mark.parametrize("top_n", [None, 1, 5, 60])
def test_accumulated_ap_equals_bruteforce_heap_with_ties(top_n):
    rng = np.random.default_rng(4)
    for trial in range(15):
        calculator, brute = (
            apc.AveragePrecisionCalculator(top_n),
            original.AveragePrecisionCalculator(top_n),
        )
        for _ in range(int(rng.integers(1, 5))):
            length = int(rng.integers(0, 150))
            scores = tied_scores(rng, length)
            labels = (rng.random(length) < 0.3) * rng.choice([1.0, 0.5, 1e-6], length)
            given = float(labels.sum() + 1) if trial % 2 else None
            calculator.accumulate(scores, labels, given)
            brute.accumulate(scores, labels, given)
        assert calculator.heap_size == brute.heap_size
        assert calculator.num_accumulated_positives == brute.num_accumulated_positives
        assert calculator.peek_ap_at_n() == brute.peek_ap_at_n()


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


# ---------------------------------------------------------------------------------------
# MeanAveragePrecisionCalculator.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("top_n", [None, 3])
@pytest.mark.parametrize("filter_empty_classes", [True, False])
def test_map_equals_bruteforce_per_class_with_ties_and_empty_classes(top_n, filter_empty_classes):
    rng = np.random.default_rng(5)
    num_class = 12
    calculator = mapc.MeanAveragePrecisionCalculator(num_class, filter_empty_classes, top_n)
    brute = original.MeanAveragePrecisionCalculator(num_class, filter_empty_classes, top_n)
    for batch in range(3):
        lengths = rng.integers(0, 30, num_class) * (rng.random(num_class) < 0.8)
        scores = [tied_scores(rng, length) for length in lengths]
        labels = [(rng.random(length) < 0.3).astype(np.float64) for length in lengths]
        labels[0] = np.zeros(lengths[0])  # class 0 never has a positive
        given = None if batch == 1 else [float(a.sum()) for a in labels]
        calculator.accumulate(scores, labels, given)
        brute.accumulate(scores, labels, given)
    expected = brute.peek_map_at_n()
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
    assert eval_util.calculate_hit_at_one(predictions, labels) == original.calculate_hit_at_one(
        predictions, labels64
    )


@pytest.mark.parametrize("top_k", [1, 2, 5])
def test_accumulated_hit_at_one_is_argmax_even_when_the_maximum_fills_the_top_k(top_k):
    # One decimal over 12 classes: the maximum is often tied, at times by more classes
    # than top_k, where argmax's first class need not be among the top k.
    rng = np.random.default_rng(18)
    predictions, labels, loss = video_batch(rng, 300, 12, labels_per_video=6, decimals=1)
    predictions[:20] = 0.5  # argpartition's top k need not hold class 0 here
    top = np.sort(predictions, axis=1)[:, ::-1]
    assert (top[:, 0] == top[:, top_k - 1]).mean() > 0.05
    result = eval_util.EvaluationMetrics(12, top_k, None).accumulate(predictions, labels, loss)
    assert result["hit_at_one"] == original.calculate_hit_at_one(predictions, labels)


@pytest.mark.parametrize("decimals", [1, 2])
def test_perr_equals_bruteforce_with_ties(decimals):
    rng = np.random.default_rng(7)
    predictions, labels, _ = video_batch(rng, 400, 30, labels_per_video=25, decimals=decimals)
    predictions[:5] = 0.0  # a video whose every score ties (and is not > 0)
    expected = original.calculate_precision_at_equal_recall_rate(
        predictions, labels.astype(np.float64)
    )
    assert eval_util.calculate_precision_at_equal_recall_rate(predictions, labels) == expected


def test_perr_with_fractional_labels_equals_bruteforce():
    rng = np.random.default_rng(8)
    predictions = tied_scores(rng, (200, 25))
    labels = rng.choice([0.0, 0.0, 0.0, 0.3, 0.5, 1.0], (200, 25)).astype(np.float32)
    expected = original.calculate_precision_at_equal_recall_rate(
        predictions, labels.astype(np.float64)
    )
    assert eval_util.calculate_precision_at_equal_recall_rate(predictions, labels) == expected


@pytest.mark.parametrize("k", [1, 5, 20, 50])
def test_top_k_by_class_equals_bruteforce_including_k_above_num_classes(k):
    rng = np.random.default_rng(9)
    predictions, labels, _ = video_batch(rng, 100, 30, decimals=1)
    got = eval_util.top_k_by_class(predictions, labels, k)
    expected = original.top_k_by_class(predictions, labels.astype(np.float64), k)
    assert got[0] == [[float(x) for x in per_class] for per_class in expected[0]]
    assert got[1] == [[float(x) for x in per_class] for per_class in expected[1]]
    assert got[2] == [float(x) for x in expected[2]]


@pytest.mark.parametrize("top_k", [3, 20, 100])
def test_gap_equals_bruteforce_with_ties(top_k):
    rng = np.random.default_rng(10)
    predictions, labels, _ = video_batch(rng, 250, 60)
    scores, actuals, positives = original.top_k_by_class(
        predictions, labels.astype(np.float64), top_k
    )
    brute = original.AveragePrecisionCalculator()
    brute.accumulate(
        [x for per_class in scores for x in per_class],
        [x for per_class in actuals for x in per_class],
        sum(positives),
    )
    assert eval_util.calculate_gap(predictions, labels, top_k) == brute.peek_ap_at_n()


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
# Row blocks scanned by parallel threads.
# ---------------------------------------------------------------------------------------


@pytest.fixture
def small_blocks(monkeypatch):
    """Scans rows in blocks of 7 (fewer than most batches hold) on 3 threads."""
    monkeypatch.setattr(eval_util, "_BLOCK_ROWS", 7)
    monkeypatch.setattr(eval_util, "_THREADS", 3)


@pytest.mark.parametrize("top_k", [1, 3, 20])
def test_evaluation_metrics_in_row_blocks_equal_bruteforce(small_blocks, top_k):
    # Scores with one decimal tie at every video's k-th place and at its n-th place for
    # PERR (a positive and negatives with the same score), so argpartition's choice of
    # tied classes decides the results; batches of 1 and 2 videos are under one block.
    rng = np.random.default_rng(16)
    batches = [
        video_batch(rng, size, 40, labels_per_video=6, decimals=1) for size in (50, 1, 2, 31)
    ]
    k_th_and_next = np.partition(batches[0][0], [-top_k - 1, -top_k], axis=1)
    assert (k_th_and_next[:, -top_k - 1] == k_th_and_next[:, -top_k]).mean() > 0.2
    metrics = eval_util.EvaluationMetrics(40, top_k, None)
    brute = original.EvaluationMetrics(40, top_k)
    for batch in batches:
        assert metrics.accumulate(*batch) == brute.accumulate(*batch)
    assert metrics.get() == brute.get()


def test_batch_functions_in_row_blocks_equal_bruteforce(small_blocks):
    rng = np.random.default_rng(17)
    predictions, labels, _ = video_batch(rng, 120, 30, labels_per_video=25, decimals=1)
    labels64 = labels.astype(np.float64)
    assert eval_util.calculate_precision_at_equal_recall_rate(
        predictions, labels
    ) == original.calculate_precision_at_equal_recall_rate(predictions, labels64)
    scores, actuals, positives = original.top_k_by_class(predictions, labels64, 5)
    got = eval_util.top_k_by_class(predictions, labels, 5)
    assert got[0] == [[float(x) for x in per_class] for per_class in scores]
    assert got[1] == [[float(x) for x in per_class] for per_class in actuals]
    brute = original.AveragePrecisionCalculator()
    brute.accumulate(
        [x for per_class in scores for x in per_class],
        [x for per_class in actuals for x in per_class],
        sum(positives),
    )
    assert eval_util.calculate_gap(predictions, labels, 5) == brute.peek_ap_at_n()


# ---------------------------------------------------------------------------------------
# EvaluationMetrics.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("top_k", "top_n"), [(20, None), (4, None), (6, 10), (500, None)])
def test_evaluation_metrics_equal_bruteforce_over_several_batches(top_k, top_n):
    rng = np.random.default_rng(11)
    num_class = 80
    metrics = eval_util.EvaluationMetrics(num_class, top_k, top_n)
    brute = original.EvaluationMetrics(num_class, top_k, top_n)
    for batch_size in (64, 1, 100, 37):
        batch = video_batch(rng, batch_size, num_class, labels_per_video=6)
        assert metrics.accumulate(*batch) == brute.accumulate(*batch)
    assert metrics.get() == brute.get()


def test_evaluation_metrics_equal_bruteforce_with_fractional_labels():
    rng = np.random.default_rng(15)
    metrics = eval_util.EvaluationMetrics(30, 5, None)
    brute = original.EvaluationMetrics(30, 5)
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
