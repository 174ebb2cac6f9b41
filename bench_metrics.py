"""Benchmark of eval_util.EvaluationMetrics against the original's algorithm.

`run_metrics_bench()` (wired into `python bench.py metrics`) evaluates 20,000 videos x
3,862 classes of tie-heavy scores (rounded to 2 decimals) in batches of 1,024, once with
eval_util and once with a plain transcription of the original starter code's algorithm
kept in this file (a Python loop per video for the top-k and PERR, one heapq heap per
class with one push per item, a per-item AP loop after the seeded shuffle). It checks
that every value is identical and prints one line with both timings and the speed-up.
"""

import heapq
import random
import time

import numpy as np

import eval_util

NUM_VIDEOS = 20_000
NUM_CLASSES = 3_862
BATCH_SIZE = 1_024
TOP_K = 20
POSITIVES_PER_VIDEO = 3
SEED = 0


def make_batches(
    num_videos: int = NUM_VIDEOS,
    num_classes: int = NUM_CLASSES,
    batch_size: int = BATCH_SIZE,
    seed: int = SEED,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Makes seeded (predictions, labels, loss) batches shaped like eval.py's.

    About POSITIVES_PER_VIDEO labels per video (drawn with replacement from a Zipf-like
    class popularity). Negatives score like a trained model's (mostly near 0), positives
    anywhere in [0.05, 1). Scores are float32 rounded to 2 decimals, so ties are
    everywhere: at every video's k-th place, at the n-th place for PERR, and inside
    every class's ranked list.

    Returns:
      A list of (predictions float32 [b, C], labels float32 [b, C], loss float32 [b]).
    """
    rng = np.random.default_rng(seed)
    popularity = 1.0 / (np.arange(num_classes) + 10.0)
    popularity /= popularity.sum()
    batches = []
    for start in range(0, num_videos, batch_size):
        size = min(batch_size, num_videos - start)
        labels = np.zeros((size, num_classes), dtype=np.float32)
        positives = rng.choice(num_classes, size=(size, POSITIVES_PER_VIDEO), p=popularity)
        labels[np.arange(size)[:, None], positives] = 1.0
        negative_scores = rng.exponential(0.02, size=(size, num_classes))
        positive_scores = rng.uniform(0.05, 1.0, size=(size, num_classes))
        scores = np.where(labels > 0, positive_scores, np.minimum(negative_scores, 1.0))
        predictions = np.round(scores, 2).astype(np.float32)
        loss = rng.random(size, dtype=np.float32)
        batches.append((predictions, labels, loss))
    return batches


# ---------------------------------------------------------------------------------------
# Reference: the original's algorithm, written the straightforward way (labels as
# float64, the project's decision; everything else as in google/youtube-8m).
# ---------------------------------------------------------------------------------------


def reference_ap_at_n(predictions, actuals, n=20, total_num_positives=None) -> float:
    """The original AveragePrecisionCalculator.ap_at_n."""
    predictions = np.array(predictions)
    actuals = np.array(actuals)
    random.seed(0)
    shuffled = random.sample(range(len(predictions)), len(predictions))
    predictions = predictions[shuffled]
    actuals = actuals[shuffled]
    sortidx = sorted(range(len(predictions)), key=lambda k: predictions[k], reverse=True)
    numpos = np.size(np.where(actuals > 0)) if total_num_positives is None else total_num_positives
    if numpos == 0:
        return 0
    if n is not None:
        numpos = min(numpos, n)
    delta_recall = 1.0 / numpos
    poscount = 0.0
    ap = 0.0
    r = len(sortidx) if n is None else min(len(sortidx), n)
    for i in range(r):
        if actuals[sortidx[i]] > 0:
            poscount += 1
            ap += poscount / (i + 1) * delta_recall
    return ap


class ReferenceAveragePrecisionCalculator:
    """The original AveragePrecisionCalculator: a heap of (prediction, actual) tuples."""

    def __init__(self, top_n=None):
        self._top_n = top_n
        self._total_positives = 0
        self._heap = []

    def accumulate(self, predictions, actuals, num_positives=None):
        """Pushes every item, one heapq call per item, as the original."""
        if num_positives is not None:
            self._total_positives += num_positives
        else:
            self._total_positives += np.size(np.where(np.array(actuals) > 1e-5))
        heap = self._heap
        for i in range(np.size(predictions)):
            if self._top_n is None or len(heap) < self._top_n:
                heapq.heappush(heap, (predictions[i], actuals[i]))
            elif predictions[i] > heap[0][0]:
                heapq.heappop(heap)
                heapq.heappush(heap, (predictions[i], actuals[i]))

    def peek_ap_at_n(self):
        """AP of the heap, passed to ap_at_n in the heap's array order."""
        if not self._heap:
            return 0
        predlists = np.array(list(zip(*self._heap, strict=True)))
        return reference_ap_at_n(
            predlists[0], predlists[1], n=self._top_n, total_num_positives=self._total_positives
        )


def reference_top_k_by_class(predictions, labels, k=20):
    """The original top_k_by_class: a Python loop per video."""
    k = min(k, predictions.shape[1])
    num_classes = predictions.shape[1]
    triplets = []
    for video in range(predictions.shape[0]):
        indices = np.argpartition(predictions[video], -k)[-k:]
        triplets.extend(
            (index, predictions[video][index], labels[video][index]) for index in indices
        )
    out_predictions = [[] for _ in range(num_classes)]
    out_labels = [[] for _ in range(num_classes)]
    for class_index, prediction, label in triplets:
        out_predictions[class_index].append(prediction)
        out_labels[class_index].append(label)
    out_true_positives = [np.sum(labels[:, i]) for i in range(num_classes)]
    return out_predictions, out_labels, out_true_positives


def reference_precision_at_equal_recall_rate(predictions, actuals):
    """The original PERR: a Python loop per video."""
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
    return aggregated_precision / num_videos


class ReferenceEvaluationMetrics:
    """The original EvaluationMetrics, one AP calculator per class."""

    def __init__(self, num_class, top_k, top_n=None):
        self.sum_hit_at_one = 0.0
        self.sum_perr = 0.0
        self.sum_loss = 0.0
        self.class_calculators = [
            ReferenceAveragePrecisionCalculator(top_n) for _ in range(num_class)
        ]
        self.global_calculator = ReferenceAveragePrecisionCalculator()
        self.top_k = top_k
        self.num_examples = 0

    def accumulate(self, predictions, labels, loss):
        """Accumulates one batch as the original does."""
        labels = labels.astype(np.float64)
        batch_size = labels.shape[0]
        top_prediction = np.argmax(predictions, 1)
        mean_hit_at_one = np.average(labels[np.arange(batch_size), top_prediction])
        mean_perr = reference_precision_at_equal_recall_rate(predictions, labels)
        mean_loss = np.mean(loss.astype(np.float64))
        sparse_predictions, sparse_labels, num_positives = reference_top_k_by_class(
            predictions, labels, self.top_k
        )
        for calculator, scores, actuals, positives in zip(
            self.class_calculators, sparse_predictions, sparse_labels, num_positives, strict=True
        ):
            calculator.accumulate(scores, actuals, positives)
        self.global_calculator.accumulate(
            eval_util.flatten(sparse_predictions),
            eval_util.flatten(sparse_labels),
            sum(num_positives),
        )
        self.num_examples += batch_size
        self.sum_hit_at_one += mean_hit_at_one * batch_size
        self.sum_perr += mean_perr * batch_size
        self.sum_loss += mean_loss * batch_size
        return {"hit_at_one": mean_hit_at_one, "perr": mean_perr, "loss": mean_loss}

    def get(self):
        """Returns the metrics of everything accumulated, as the original does."""
        aps = [c.peek_ap_at_n() for c in self.class_calculators if c._total_positives > 0]
        return {
            "avg_hit_at_one": self.sum_hit_at_one / self.num_examples,
            "avg_perr": self.sum_perr / self.num_examples,
            "avg_loss": self.sum_loss / self.num_examples,
            "aps": aps,
            "gap": self.global_calculator.peek_ap_at_n(),
        }


# ---------------------------------------------------------------------------------------
# The benchmark.
# ---------------------------------------------------------------------------------------


def _evaluate(metrics, batches) -> tuple[dict, list[dict], float]:
    """Runs accumulate over the batches, then get(); returns results and seconds."""
    start = time.perf_counter()
    per_batch = [metrics.accumulate(*batch) for batch in batches]
    result = metrics.get()
    return result, per_batch, time.perf_counter() - start


def run_metrics_bench() -> None:
    """Times EvaluationMetrics against the reference on the same batches; prints one line."""
    batches = make_batches()
    fast, fast_batches, fast_seconds = _evaluate(
        eval_util.EvaluationMetrics(NUM_CLASSES, TOP_K, None), batches
    )
    reference, reference_batches, reference_seconds = _evaluate(
        ReferenceEvaluationMetrics(NUM_CLASSES, TOP_K), batches
    )
    identical = fast == reference and fast_batches == reference_batches
    print(
        f"metrics: fast {fast_seconds:.2f} s, reference {reference_seconds:.2f} s, "
        f"speed-up {reference_seconds / fast_seconds:.1f}x, identical values: {identical}"
    )


if __name__ == "__main__":
    run_metrics_bench()
