r"""Benchmarks: throughput figures measured as ratios within one run.

Run from the repository root:

  python -m benchmarks.bench readers   # both readers vs a one-record-at-a-time pipeline
  python -m benchmarks.bench train     # train-step examples/s, reader-fed vs in-memory
  python -m benchmarks.bench metrics   # EvaluationMetrics vs the original's algorithm
  python -m benchmarks.bench eval      # eval.py's examples/s against the original's
  python -m benchmarks.bench inference # inference.py end to end vs one record at a time
  python -m benchmarks.bench frame     # frame-level training, reader-fed vs in-memory

Each benchmark writes its own sample data (make_sample_data.py) to a temporary
directory unless --data_dir points at existing sample data. Timings are medians over
--repeats passes after one warm-up pass; compare the ratios, not absolute figures, on a
shared machine.
"""

import atexit
import dataclasses
import functools
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import tensorflow as tf
from absl import flags

import cli
import eval as eval_module
import export_model
import features
import inference
import losses
import models
import readers
import train
import trained_model
from benchmarks import bench_metrics
from errors import UserError
from settings import setting

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """The benchmarks' settings, each a flag; the benchmarks read them as FLAGS."""

    data_dir: str = setting("", "Existing sample data (make_sample_data.py); default: make it.")
    repeats: int = setting(3, "Timed passes per figure; the median is reported.")


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.cache
def scratch_dir() -> str:
    """Returns a temporary directory for this run's data and models, removed at exit."""
    path = tempfile.mkdtemp(prefix="yt8m_bench_")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def sample_data_dir(data_format: str, num_videos: int, mean_frames: int = 150) -> str:
    """Returns a directory of sample data, writing it (once per run) if needed.

    mean_frames 150 gives about the real data set's bytes per video once padded to 300.
    """
    if FLAGS.data_dir:
        return FLAGS.data_dir
    output_dir = tempfile.mkdtemp(prefix=f"{data_format}_data_", dir=scratch_dir())
    subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "make_sample_data.py"),
            f"--output_dir={output_dir}",
            f"--num_train_videos={num_videos}",
            "--num_validate_videos=0",
            "--num_test_videos=0",
            f"--mean_frames={mean_frames}",
            "--num_shards=4",
            f"--formats={data_format}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return output_dir


def pattern_bytes(data_pattern: str) -> int:
    """Returns the total size of the files matching a pattern."""
    return sum(tf.io.gfile.stat(path).length for path in readers.list_files(data_pattern))


def median_rates(jobs: dict[str, Callable[[], int]]) -> dict[str, float]:
    """Returns each job's median items per second; a job returns how many items it did.

    After one warm-up run of each, the jobs take turns for --repeats rounds, so machine
    noise falls on all of them alike.
    """
    for job in jobs.values():
        job()
    rates = {name: [] for name in jobs}
    for _ in range(FLAGS.repeats):
        for name, job in jobs.items():
            start = time.perf_counter()
            count = job()
            rates[name].append(count / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def videos_in_one_pass(dataset: tf.data.Dataset) -> Callable[[], int]:
    """Returns a job that reads the dataset once and returns the number of videos."""
    return lambda: sum(int(tf.shape(batch["video_ids"])[0]) for batch in dataset)


def naive_video_dataset(reader, data_pattern: str, batch_size: int) -> tf.data.Dataset:
    """The original's shape of pipeline: parse one Example at a time, then batch."""
    spec = {"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)}
    for name, size in zip(reader.feature_names, reader.feature_sizes):
        spec[name] = tf.io.FixedLenFeature([size], tf.float32)

    def parse_one(serialized):
        parsed = tf.io.parse_single_example(serialized, spec)
        labels = tf.sparse.to_indicator(parsed["labels"], reader.num_classes)
        return {
            "video_ids": parsed["id"],
            "video_matrix": tf.concat([parsed[n] for n in reader.feature_names], 0),
            "labels": tf.cast(labels, tf.float32),
            "num_frames": tf.constant(1, tf.int32),
        }

    return one_record_at_a_time(data_pattern, parse_one, batch_size)


def one_record_at_a_time(data_pattern: str, parse_one, batch_size: int) -> tf.data.Dataset:
    """Returns the batches of parse_one applied to each record (the original's shape)."""
    records = tf.data.TFRecordDataset(readers.list_files(data_pattern))
    return (
        records.map(parse_one, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def naive_frame_dataset(reader, data_pattern: str, batch_size: int) -> tf.data.Dataset:
    """The original's shape of pipeline: parse one SequenceExample at a time, then batch."""

    def parse_one(serialized):
        context, sequences = tf.io.parse_single_sequence_example(
            serialized,
            context_features={
                "id": tf.io.FixedLenFeature([], tf.string),
                "labels": tf.io.VarLenFeature(tf.int64),
            },
            sequence_features={
                name: tf.io.FixedLenSequenceFeature([], tf.string) for name in reader.feature_names
            },
        )
        matrices, num_frames = [], None
        for name, size in zip(reader.feature_names, reader.feature_sizes):
            frames = tf.reshape(tf.io.decode_raw(sequences[name], tf.uint8), [-1, size])
            frames = frames[: reader.max_frames]
            if num_frames is None:
                num_frames = tf.shape(frames)[0]
            frames = features.dequantize(tf.cast(frames, tf.float32))
            padding = [[0, reader.max_frames - tf.shape(frames)[0]], [0, 0]]
            matrices.append(tf.pad(frames, padding))
        labels = tf.sparse.to_indicator(context["labels"], reader.num_classes)
        return {
            "video_ids": context["id"],
            "video_matrix": tf.ensure_shape(tf.concat(matrices, 1), [reader.max_frames, None]),
            "labels": tf.cast(labels, tf.float32),
            "num_frames": num_frames,
        }

    return one_record_at_a_time(data_pattern, parse_one, batch_size)


def report_pair(label: str, data_pattern: str, fast: tf.data.Dataset, naive: tf.data.Dataset):
    """Times both pipelines over the same files and prints videos/s, MB/s and the ratio."""
    megabytes_per_video = pattern_bytes(data_pattern) / 1e6 / num_records(data_pattern)
    rates = median_rates({"reader": videos_in_one_pass(fast), "naive": videos_in_one_pass(naive)})
    for name, rate in rates.items():
        print(f"{label} {name:>6}: {rate:10,.0f} videos/s {rate * megabytes_per_video:8,.1f} MB/s")
    print(f"{label}  ratio: {rates['reader'] / rates['naive']:.2f}x the naive pipeline")


def num_records(data_pattern: str) -> int:
    """Returns the number of records in the files matching a pattern."""
    return sum(1 for _ in tf.data.TFRecordDataset(readers.list_files(data_pattern)))


def bench_readers() -> None:
    """Both readers against per-record parsing, on the same sample files."""
    video_dir = sample_data_dir("video", num_videos=20000)
    video_pattern = os.path.join(video_dir, "video", "train*.tfrecord")
    video_reader = readers.YT8MAggregatedFeatureReader()
    report_pair(
        "video-level batch 1024",
        video_pattern,
        video_reader.get_dataset(video_pattern, 1024),
        naive_video_dataset(video_reader, video_pattern, 1024),
    )
    frame_pattern = os.path.join(
        sample_data_dir("frame", num_videos=2000), "frame", "train*.tfrecord"
    )
    frame_reader = readers.YT8MFrameFeatureReader()
    report_pair(
        "frame-level batch 64",
        frame_pattern,
        frame_reader.get_dataset(frame_pattern, 64),
        naive_frame_dataset(frame_reader, frame_pattern, 64),
    )
    # As train.py and eval.py read frames: uint8, dequantized inside the model step.
    quantized_reader = readers.YT8MFrameFeatureReader(quantized_frames=True)
    report_pair(
        "frame-level batch 64, uint8 frames",
        frame_pattern,
        quantized_reader.get_dataset(frame_pattern, 64),
        naive_frame_dataset(frame_reader, frame_pattern, 64),
    )


def train_step_rates(
    config, reader, feeds: dict, num_steps: int, repeats: int | None = None
) -> dict[str, float]:
    """Returns examples/s of train.py's step for each named batch iterator.

    One model and compiled step serve every feed; the feeds take turns, --repeats rounds
    of num_steps steps each, so machine noise falls on all of them alike; medians.
    """
    strategy = tf.distribute.get_strategy()
    model = models.create_built_model(config.model, reader, config.model_hyperparameters)
    optimizer = train.create_optimizer(config, config.batch_size)
    optimizer.build(model.trainable_variables)
    label_loss_fn = losses.LOSSES[config.label_loss]()
    step = train.make_train_step(model, optimizer, label_loss_fn, config, strategy)
    for batches in feeds.values():  # Compile and warm up.
        for _ in range(2):
            float(step(next(batches))["label_loss"])
    rates = {name: [] for name in feeds}
    for _ in range(repeats or FLAGS.repeats):
        for name, batches in feeds.items():
            start = time.perf_counter()
            for _ in range(num_steps):
                outputs = step(next(batches))
            float(outputs["label_loss"])
            rates[name].append(num_steps * config.batch_size / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def bench_train() -> None:
    """Train-step examples/s for LogisticModel and MoeModel, reader-fed vs in-memory."""
    data_pattern = os.path.join(
        sample_data_dir("video", num_videos=20000), "video", "train*.tfrecord"
    )
    for model_name, num_steps in (("LogisticModel", 40), ("MoeModel", 12)):
        config = train.TrainConfig(
            model=model_name,
            batch_size=1024,
            feature_names="mean_rgb,mean_audio",
            feature_sizes="1024,128",
            model_hyperparameters={"moe_num_mixtures": 2},
        )
        reader = readers.create_reader(False, config.feature_names, config.feature_sizes)
        dataset = reader.get_dataset(
            data_pattern, config.batch_size, training=True, num_epochs=1000
        )
        in_memory_batch = next(iter(dataset))
        rates = train_step_rates(
            config,
            reader,
            {
                "in-memory": itertools.repeat(in_memory_batch),
                "reader-fed": iter(dataset),
            },
            num_steps,
        )
        print(
            f"train {model_name:13s} batch 1024: reader-fed {rates['reader-fed']:8,.0f} ex/s, "
            f"in-memory {rates['in-memory']:8,.0f} ex/s, "
            f"ratio {rates['reader-fed'] / rates['in-memory']:.2f}"
        )


FEATURES = {"video": ("mean_rgb,mean_audio", "1024,128"), "frame": ("rgb,audio", "1024,128")}


def data_pattern_of(data_format: str) -> str:
    """Returns the sample train files of a format: 20,000 videos, or 2,000 with frames."""
    num_videos = 20000 if data_format == "video" else 2000
    return os.path.join(sample_data_dir(data_format, num_videos), data_format, "train*.tfrecord")


def untrained_train_dir(model_name: str, data_format: str):
    """Returns (train_dir, reader, model): model_flags.json and a checkpoint of a new model."""
    feature_names, feature_sizes = FEATURES[data_format]
    train_dir = tempfile.mkdtemp(prefix="model_", dir=scratch_dir())
    config = train.TrainConfig(
        train_dir=train_dir,
        model=model_name,
        feature_names=feature_names,
        feature_sizes=feature_sizes,
        frame_features=data_format == "frame",
    )
    trained_model.write_or_check_model_flags(train_dir, config.model_flags())
    reader = readers.create_reader(config.frame_features, feature_names, feature_sizes)
    model = models.create_built_model(model_name, reader, config.model_hyperparameters)
    tf.train.Checkpoint(model=model).save(os.path.join(train_dir, "model.ckpt"))
    return train_dir, reader, model


# The original TF1 scripts on this kind of 2-core machine, examples/s (measured for the
# project with google/youtube-8m's scripts under TensorFlow 1.15):
# (data format, model, batch size, original examples/s).
ORIGINAL_EVAL = [
    ("video", "LogisticModel", 1024, 3540),
    ("video", "MoeModel", 1024, 2140),
    ("frame", "FrameLevelLogisticModel", 1024, 200),
    ("frame", "DbofModel", 1024, 200),
]
ORIGINAL_INFERENCE = [
    ("video", "LogisticModel", 512, 10400),
    ("video", "MoeModel", 512, 3380),
    ("frame", "FrameLevelLogisticModel", 512, 180),
    ("frame", "DbofModel", 512, 180),
]
ORIGINAL_FRAME_TRAINING = {"FrameLevelLogisticModel": 1420, "DbofModel": 173, "LstmModel": None}


def bench_eval() -> None:
    """eval.py's evaluation pass over sample data, against the original's figures."""
    for data_format, model_name, batch_size, original in ORIGINAL_EVAL:
        data_pattern = data_pattern_of(data_format)
        train_dir, _, _ = untrained_train_dir(model_name, data_format)
        evaluator = eval_module.Evaluator(train_dir, data_pattern, batch_size, 20, 8)
        evaluator.checkpoint.restore(tf.train.latest_checkpoint(train_dir))
        timings = []
        for _ in range(FLAGS.repeats + 1):  # The first pass traces and compiles.
            start = time.perf_counter()
            evaluator.evaluate(1)
            timings.append(time.perf_counter() - start)
        rate = num_records(data_pattern) / statistics.median(timings[1:])
        print(
            f"eval {model_name:23s} batch {batch_size}: {rate:8,.0f} ex/s, original "
            f"{original:,} ex/s, ratio {rate / original:.2f}x"
        )


def bench_inference() -> None:
    """inference.py's CSV writing vs one serialized record at a time, same SavedModel."""
    for data_format, model_name, batch_size, original in ORIGINAL_INFERENCE:
        data_pattern = data_pattern_of(data_format)
        train_dir, reader, model = untrained_train_dir(model_name, data_format)
        export_model.export(model, reader, trained_model.inference_model_path(train_dir))
        serve = export_model.load(trained_model.inference_model_path(train_dir))
        output_file = os.path.join(train_dir, "predictions.csv")
        records = [
            r.numpy() for r in tf.data.TFRecordDataset(readers.list_files(data_pattern)).take(500)
        ]
        rates = median_rates(
            {
                "batched": functools.partial(
                    inference.write_predictions,
                    serve,
                    reader,
                    data_pattern,
                    output_file,
                    batch_size,
                    20,
                ),
                "single": functools.partial(served_one_at_a_time, serve, records),
            }
        )
        batched, one_at_a_time = rates["batched"], rates["single"]
        print(
            f"inference {model_name:23s}: {batched:8,.0f} videos/s end to end, "
            f"{one_at_a_time:6,.0f} one record at a time, ratio {batched / one_at_a_time:.1f}x; "
            f"original {original:,}/s, ratio {batched / original:.2f}x"
        )


def served_one_at_a_time(serve, records: list[bytes]) -> int:
    """Sends each serialized record to the SavedModel alone; returns how many were sent."""
    for record in records:
        serve(example_bytes=tf.constant([record]))["predictions"].numpy()
    return len(records)


def bench_frame() -> None:
    """Frame-level training examples/s, reader-fed vs in-memory, against the original's.

    Default model sizes, batch 128 (the README's advice for frame-level features).
    """
    data_pattern = data_pattern_of("frame")
    for model_name, original in ORIGINAL_FRAME_TRAINING.items():
        config = train.TrainConfig(
            model=model_name,
            batch_size=128,
            frame_features=True,
            feature_names="rgb,audio",
            feature_sizes="1024,128",
        )
        # As train.py reads frames: uint8, dequantized in the step.
        reader = readers.create_reader(
            True, config.feature_names, config.feature_sizes, quantized_frames=True
        )
        dataset = reader.get_dataset(
            data_pattern, config.batch_size, training=True, num_epochs=1000
        )
        # The LSTM over 300 frames takes tens of seconds a step on 2 cores: one round.
        num_steps, repeats = {
            "FrameLevelLogisticModel": (20, None),
            "DbofModel": (4, None),
            "LstmModel": (1, 1),
        }[model_name]
        rates = train_step_rates(
            config,
            reader,
            {"in-memory": itertools.repeat(next(iter(dataset))), "reader-fed": iter(dataset)},
            num_steps,
            repeats,
        )
        versus = ""
        if original:
            versus = f", original {original:,} ex/s, ratio {rates['reader-fed'] / original:.2f}x"
        print(
            f"train {model_name:23s} batch 128: reader-fed {rates['reader-fed']:8,.0f} ex/s, "
            f"in-memory {rates['in-memory']:8,.0f} ex/s, "
            f"ratio {rates['reader-fed'] / rates['in-memory']:.2f}" + (versus if original else "")
        )


BENCHMARKS = {
    "readers": bench_readers,
    "train": bench_train,
    "metrics": bench_metrics.run_metrics_bench,
    "eval": bench_eval,
    "inference": bench_inference,
    "frame": bench_frame,
}


def main(unused_config: BenchConfig, names: list[str]) -> None:
    """Runs the benchmarks named on the command line (default: all)."""
    names = names or sorted(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise UserError(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}.")
    for name in names:
        BENCHMARKS[name]()


if __name__ == "__main__":
    cli.run(main, BenchConfig, with_arguments=True)
