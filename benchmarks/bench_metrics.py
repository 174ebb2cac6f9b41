"""Benchmark of eval_util.EvaluationMetrics against the original's algorithm.

`run_metrics_bench()` (wired into `python -m benchmarks.bench metrics`; alone, run
`python -m benchmarks.bench_metrics` from the repository root) evaluates 20,000 videos
x 3,862 classes of tie-heavy scores (rounded to 2 decimals) in batches of 1,024 with
eval_util and with benchmarks/original_metrics.py, the plain transcription of the
original starter code (a Python loop per video for the top-k and PERR, one heapq heap
per class with one push per item, a per-item AP loop after the seeded shuffle). It
checks that every value is identical and prints one line with the timings and the
speed-up.

eval_util is timed twice. The first evaluation computes the seeded shuffle of every
list length it meets (`random.sample`, as the original does for every list); later
ones, like eval.py's evaluation of the next checkpoint on the same videos, find the
shuffles of the lengths seen before cached (here: all of them).
"""

import quiet_tensorflow  # noqa: F401 (first: hides TensorFlow's start-up noise)

# isort: split
import time

import numpy as np

import eval_util
from benchmarks import original_metrics

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
    fast = [_evaluate(eval_util.EvaluationMetrics(NUM_CLASSES, TOP_K, None), batches)]
    fast.append(_evaluate(eval_util.EvaluationMetrics(NUM_CLASSES, TOP_K, None), batches))
    reference, reference_batches, reference_seconds = _evaluate(
        original_metrics.EvaluationMetrics(NUM_CLASSES, TOP_K), batches
    )
    identical = all(
        result == reference and per_batch == reference_batches for result, per_batch, _ in fast
    )
    first_seconds, again_seconds = fast[0][2], fast[1][2]
    print(
        f"metrics: fast {first_seconds:.2f} s (again, shuffles cached: {again_seconds:.2f} s), "
        f"reference {reference_seconds:.2f} s, speed-up {reference_seconds / first_seconds:.1f}x "
        f"({reference_seconds / again_seconds:.1f}x), identical values: {identical}"
    )


if __name__ == "__main__":
    run_metrics_bench()
