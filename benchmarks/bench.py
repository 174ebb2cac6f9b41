r"""Benchmarks: throughput figures measured as ratios within one run.

Run from the repository root:

  python -m benchmarks.bench readers   # both readers vs a one-record-at-a-time pipeline
                                       # and vs the limits of reading and of parsing
  python -m benchmarks.bench train     # train-step examples/s, reader-fed vs in-memory,
                                       # and the loop's steps/s on a tiny model
  python -m benchmarks.bench mixed     # throughput and validate GAP, float32 vs bfloat16
  python -m benchmarks.bench gpu       # train/eval/inference on the accelerator present
  python -m benchmarks.bench metrics   # EvaluationMetrics vs the original's algorithm
  python -m benchmarks.bench eval      # eval.py's examples/s against the original's
  python -m benchmarks.bench inference # inference.py end to end vs one record at a time
  python -m benchmarks.bench frame     # frame-level training, reader-fed vs in-memory
  python -m benchmarks.bench zoo       # the winners' models: train.py examples/s and
                                       # peak memory, published and small configurations
  python -m benchmarks.bench startup   # train/eval/inference.py from start to exit on
                                       # 50 shards of ~290 videos, phase by phase

Each benchmark writes its own sample data (make_sample_data.py) to a temporary
directory unless --data_dir points at existing sample data. Timings are medians over
--repeats passes after one warm-up pass; compare the ratios, not absolute figures, on a
shared machine.
"""

import quiet_tensorflow  # noqa: F401 (first: hides TensorFlow's start-up noise)

# isort: split
import atexit
import dataclasses
import datetime
import functools
import itertools
import os
import re
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
    scripts_dir: str = setting(
        "", "startup: the checkout whose scripts to time (e.g. an older commit's worktree)."
    )


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
    return lambda: sum(int(tf.shape(tf.nest.flatten(batch)[0])[0]) for batch in dataset)


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


def report_rates(label: str, data_pattern: str, pipelines: dict[str, tf.data.Dataset]) -> dict:
    """Times the pipelines over the same files; prints videos/s and MB/s; returns the rates."""
    megabytes_per_video = pattern_bytes(data_pattern) / 1e6 / num_records(data_pattern)
    rates = median_rates({name: videos_in_one_pass(dataset) for name, dataset in pipelines.items()})
    for name, rate in rates.items():
        print(f"{label} {name:>10}: {rate:10,.0f} videos/s {rate * megabytes_per_video:8,.1f} MB/s")
    return rates


def report_pair(label: str, data_pattern: str, fast: tf.data.Dataset, naive: tf.data.Dataset):
    """Times both pipelines over the same files and prints videos/s, MB/s and the ratio."""
    rates = report_rates(label, data_pattern, {"reader": fast, "naive": naive})
    print(f"{label}  ratio: {rates['reader'] / rates['naive']:.2f}x the naive pipeline")


def record_batches(data_pattern: str, batch_size: int) -> tf.data.Dataset:
    """Reading alone: the files' records in batches, nothing parsed."""
    records = tf.data.TFRecordDataset(readers.list_files(data_pattern), buffer_size=8 << 20)
    return records.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def parsed_from_memory(reader, data_pattern: str, batch_size: int) -> tf.data.Dataset:
    """Parsing alone: the reader's parse of records already in memory, nothing read."""
    records = tf.data.TFRecordDataset(readers.list_files(data_pattern))
    in_memory = tf.data.Dataset.from_tensor_slices(list(records.as_numpy_iterator()))
    batches = reader.parsed_batches(in_memory, batch_size, deterministic=False)
    return batches.prefetch(tf.data.AUTOTUNE).with_options(readers.pipeline_options())


def report_frame_stages(data_pattern: str, batch_size: int) -> None:
    """The frame reader as train.py uses it, against naive parsing and the stage limits."""
    uint8_reader = readers.YT8MFrameFeatureReader(quantized_frames=True)
    float_reader = readers.YT8MFrameFeatureReader()
    label = f"frame-level batch {batch_size}"
    rates = report_rates(
        label,
        data_pattern,
        {
            "read only": record_batches(data_pattern, batch_size),
            "parse only": parsed_from_memory(uint8_reader, data_pattern, batch_size),
            "train.py": uint8_reader.get_dataset(data_pattern, batch_size, training=True),
            "float": float_reader.get_dataset(data_pattern, batch_size),
            "naive": naive_frame_dataset(float_reader, data_pattern, batch_size),
        },
    )
    print(
        f"{label}: as train.py reads (uint8, training) {rates['train.py'] / rates['naive']:.2f}x "
        f"the naive float pipeline and {rates['train.py'] / rates['parse only']:.0%} of the "
        f"parse-only limit; float output {rates['float'] / rates['naive']:.2f}x naive"
    )


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
    report_frame_stages(frame_pattern, 64)


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
    steps_per_second = loop_steps_per_second(data_pattern)
    print(f"train.py loop, LogisticModel on mean_audio, batch 32: {steps_per_second:6,.0f} steps/s")


def train_seconds(config: train.TrainConfig) -> float:
    """Returns the seconds train.train takes for the config, in a new train_dir."""
    train_dir = tempfile.mkdtemp(prefix="loop_", dir=scratch_dir())
    start = time.perf_counter()
    train.train(dataclasses.replace(config, train_dir=train_dir))
    return time.perf_counter() - start


def loop_steps_per_second(data_pattern: str, num_steps: int = 400) -> float:
    """Returns steps/s of train.py's whole loop on a model so small that host work dominates.

    Logging, the metrics every 10 steps and the input pipeline included; the fixed costs
    (model building, compilation, the final checkpoint) cancel out between a 50-step run
    and a 50 + num_steps one. Median over --repeats pairs.
    """
    config = train.TrainConfig(
        train_data_pattern=data_pattern,
        model="LogisticModel",
        feature_names="mean_audio",
        feature_sizes="128",
        batch_size=32,
        num_epochs=1000,
        export_model_steps=10**9,
    )
    rates = []
    for _ in range(FLAGS.repeats):
        short = train_seconds(dataclasses.replace(config, max_steps=50))
        long = train_seconds(dataclasses.replace(config, max_steps=50 + num_steps))
        rates.append(num_steps / (long - short))
    return statistics.median(rates)


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


@functools.cache
def validated_data_dir(data_format: str) -> str:
    """Returns sample data with train and validate splits (--data_dir if given)."""
    if FLAGS.data_dir:
        return FLAGS.data_dir
    output_dir = tempfile.mkdtemp(prefix=f"{data_format}_validated_", dir=scratch_dir())
    num_train, num_validate = (10000, 2000) if data_format == "video" else (2000, 500)
    subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "make_sample_data.py"),
            f"--output_dir={output_dir}",
            f"--num_train_videos={num_train}",
            f"--num_validate_videos={num_validate}",
            "--num_test_videos=0",
            "--mean_frames=150",
            f"--formats={data_format}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return output_dir


# (data format, model, batch size, training steps) of the mixed-precision comparison.
MIXED_PRECISION_RUNS = [
    ("video", "LogisticModel", 1024, 60),
    ("video", "MoeModel", 1024, 60),
    ("frame", "DbofModel", 128, 60),
]


def bench_mixed() -> None:
    """Train examples/s and validate GAP at equal steps, float32 against mixed_bfloat16."""
    for data_format, model_name, batch_size, num_steps in MIXED_PRECISION_RUNS:
        data_dir = validated_data_dir(data_format)
        results = {}
        for policy in ("none", "mixed_bfloat16"):
            config = train_config(
                os.path.join(data_dir, data_format, "train*.tfrecord"),
                data_format,
                model_name,
                batch_size,
                policy,
                max_steps=num_steps,
                num_epochs=1000,
            )
            train_dir = tempfile.mkdtemp(prefix="mixed_", dir=scratch_dir())
            train.train(dataclasses.replace(config, train_dir=train_dir))
            validate = os.path.join(data_dir, data_format, "validate*.tfrecord")
            evaluator = eval_module.Evaluator(train_dir, validate, batch_size, 20, 8)
            evaluator.checkpoint.restore(tf.train.latest_checkpoint(train_dir))
            gap = evaluator.evaluate(num_steps)["gap"]
            results[policy] = (in_memory_train_rate(config, num_steps=8), gap)
        (rate32, gap32), (rate16, gap16) = results["none"], results["mixed_bfloat16"]
        print(
            f"mixed precision {model_name:13s} batch {batch_size}, {num_steps} steps: float32 "
            f"{rate32:8,.0f} ex/s GAP {gap32:.4f}; mixed_bfloat16 {rate16:8,.0f} ex/s GAP "
            f"{gap16:.4f}; speed {rate16 / rate32:.2f}x, GAP difference {gap16 - gap32:+.4f}"
        )


def train_config(
    data_pattern: str, data_format: str, model_name: str, batch_size: int, policy: str, **more
) -> train.TrainConfig:
    """Returns the training settings of a model on sample data of a format, in a precision."""
    feature_names, feature_sizes = FEATURES[data_format]
    return train.TrainConfig(
        train_data_pattern=data_pattern,
        model=model_name,
        feature_names=feature_names,
        feature_sizes=feature_sizes,
        frame_features=data_format == "frame",
        batch_size=batch_size,
        mixed_precision=policy,
        **more,
    )


def in_memory_train_rate(config: train.TrainConfig, num_steps: int) -> float:
    """Returns examples/s of the config's train step on one batch held in memory."""
    reader = readers.create_reader(
        config.frame_features, config.feature_names, config.feature_sizes, quantized_frames=True
    )
    batch = next(iter(reader.get_dataset(config.train_data_pattern, config.batch_size)))
    with train.precision_policy(config.mixed_precision):
        rates = train_step_rates(config, reader, {"in-memory": itertools.repeat(batch)}, num_steps)
    return rates["in-memory"]


# Published figures of the original on 2017-18 hardware (its README and the YouTube-8M
# papers): evaluation examples/s per format, inference videos/s.
ORIGINAL_PUBLISHED = {"eval video": 2709, "eval frame": 835, "inference": 550}
GPU_RUNS = [  # (data format, model, the original's training batch size)
    ("video", "LogisticModel", 1024),
    ("video", "MoeModel", 1024),
    ("frame", "FrameLevelLogisticModel", 128),
    ("frame", "DbofModel", 128),
]


def bench_gpu() -> None:
    """Train, eval and inference throughput on the accelerator present (or the CPU).

    Never run by the tests: the figures for a GPU machine's closing note. Each model at
    the original's batch sizes (train as above, eval 1024, inference 512), with and without
    mixed precision (bfloat16, and float16 with loss scaling where a GPU is present).
    """
    gpus = tf.config.list_physical_devices("GPU")
    device = ", ".join(gpu.name for gpu in gpus) or "CPU only"
    print(f"gpu benchmark on: {device}")
    policies = ["none", "mixed_bfloat16"] + (["mixed_float16"] if gpus else [])
    for data_format, model_name, batch_size in GPU_RUNS:
        for policy in policies:
            config = train_config(
                data_pattern_of(data_format), data_format, model_name, batch_size, policy
            )
            rate = in_memory_train_rate(config, num_steps=20)
            print(f"gpu train {model_name:23s} batch {batch_size} {policy:14s}: {rate:9,.0f} ex/s")
        eval_rate, inference_rate = serving_rates(data_format, model_name)
        print(
            f"gpu eval {model_name:23s} batch 1024: {eval_rate:9,.0f} ex/s (original "
            f"{ORIGINAL_PUBLISHED['eval ' + data_format]:,}); inference batch 512: "
            f"{inference_rate:9,.0f} videos/s (original ~{ORIGINAL_PUBLISHED['inference']:,})"
        )


def serving_rates(data_format: str, model_name: str) -> tuple[float, float]:
    """Returns eval.py's examples/s (batch 1024) and inference.py's videos/s (batch 512)."""
    data_pattern = data_pattern_of(data_format)
    train_dir, reader, model = untrained_train_dir(model_name, data_format)
    evaluator = eval_module.Evaluator(train_dir, data_pattern, 1024, 20, 8)
    evaluator.checkpoint.restore(tf.train.latest_checkpoint(train_dir))
    export_model.export(model, reader, trained_model.inference_model_path(train_dir))
    serve = export_model.load(trained_model.inference_model_path(train_dir))
    output_file = os.path.join(train_dir, "predictions.csv")
    rates = median_rates(
        {
            "eval": functools.partial(evaluated_videos, evaluator, data_pattern),
            "inference": functools.partial(
                inference.write_predictions, serve, reader, data_pattern, output_file, 512, 20
            ),
        }
    )
    return rates["eval"], rates["inference"]


def evaluated_videos(evaluator, data_pattern: str) -> int:
    """Evaluates once; returns the number of videos evaluated."""
    evaluator.evaluate(1)
    return num_records(data_pattern)


WILLOW = ("--iterations=300", "--moe_l2=1e-6")
GATED = ("--gating", "--moe_prob_gating")
NEXTVLAD = ("--groups=8", "--expansion=2", "--drop_rate=0.5", "--l2_penalty=1e-5")
# label: (model, the published flags, the published batch size, a small configuration).
ZOO_RUNS = {
    "DBoF (the starter's)": ("DbofModel", (), 128, ("--dbof_cluster_size=1024",)),
    "Gated NetVLAD": (
        "NetVLADModelLF",
        (*WILLOW, *GATED, "--netvlad_cluster_size=256", "--netvlad_relu=False"),
        80,
        ("--netvlad_cluster_size=32", "--netvlad_hidden_size=256", "--netvlad_relu=False"),
    ),
    "Gated NetRVLAD": (
        "NetVLADModelLF",
        (*WILLOW, *GATED, "--netvlad_cluster_size=256", "--netvlad_relu=False", "--lightvlad"),
        80,
        ("--netvlad_cluster_size=32", "--netvlad_hidden_size=256", "--lightvlad"),
    ),
    "Gated NetFV": (
        "NetFVModelLF",
        (*WILLOW, *GATED, "--fv_cluster_size=128", "--fv_hidden_size=1024", "--fv_relu=False")
        + ("--fv_couple_weights=False",),
        80,
        ("--fv_cluster_size=16", "--fv_hidden_size=256", "--fv_couple_weights=False"),
    ),
    "Gated Soft-DBoW": (
        "GatedDbofModelLF",
        (*WILLOW, "--dbof_cluster_size=4096", "--dbof_relu=False", "--moe_prob_gating"),
        80,
        ("--dbof_cluster_size=512", "--dbof_hidden_size=256", "--dbof_relu=False"),
    ),
    "Soft-DBoW": (
        "SoftDbofModelLF",
        ("--iterations=300", "--dbof_cluster_size=8000", "--dbof_relu=False"),
        80,
        ("--dbof_cluster_size=512", "--dbof_hidden_size=256", "--dbof_relu=False"),
    ),
    "GRU": ("GruModel", ("--gru_cells=1200", "--moe_l2=1e-6"), 128, ("--gru_cells=128",)),
    "NeXtVLAD": (
        "NeXtVLADModel",
        (*NEXTVLAD, "--nextvlad_cluster_size=112", "--nextvlad_hidden_size=2048")
        + ("--gating_reduction=16",),
        160,
        ("--nextvlad_cluster_size=16", "--nextvlad_hidden_size=256"),
    ),
    "MixNeXtVLAD": (
        "MixNeXtVladModel",
        (*NEXTVLAD, "--nextvlad_cluster_size=112", "--nextvlad_hidden_size=2048")
        + ("--gating_reduction=16", "--mix_number=3", "--cl_temperature=3", "--cl_lambda=9"),
        160,
        ("--nextvlad_cluster_size=16", "--nextvlad_hidden_size=256", "--mix_number=3"),
    ),
}
ZOO_BATCH_SIZE = 8  # The published configurations run at this batch size here.


def train_py_run(flags: tuple[str, ...], batch_size: int, num_steps: int) -> tuple[float, int]:
    """Runs train.py on frame-level sample data; returns (examples/s, peak memory bytes).

    Examples/s is the median of train.py's own per-step figures after the first two
    steps; the peak memory is the process's maximum resident set.
    """
    train_dir = tempfile.mkdtemp(prefix="zoo_", dir=scratch_dir())
    command = [
        sys.executable,
        os.path.join(REPO, "train.py"),
        "--frame_features",
        "--feature_names=rgb,audio",
        "--feature_sizes=1024,128",
        f"--train_data_pattern={data_pattern_of('frame')}",
        f"--train_dir={train_dir}",
        f"--batch_size={batch_size}",
        f"--max_steps={num_steps}",
        "--num_epochs=1000",
        "--base_learning_rate=0.0002",
        *flags,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    log = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise RuntimeError(f"{' '.join(command)} failed:\n{log[-3000:]}")
    rates = [float(rate) for rate in re.findall(r"Examples/sec: ([0-9.]+)", log)]
    shutil.rmtree(train_dir, ignore_errors=True)
    return statistics.median(rates[2:]), usage.ru_maxrss * 1024


def bench_zoo() -> None:
    """train.py examples/s and peak memory of the winners' models, from start to exit.

    Each published configuration at batch 8 (what a 2-core machine runs in minutes), and
    a small configuration of the same model at the published batch size.
    """
    for label, (model_name, published, batch_size, small) in ZOO_RUNS.items():
        model = (f"--model={model_name}",)
        rate, memory = train_py_run(model + published, ZOO_BATCH_SIZE, num_steps=6)
        small_rate, small_memory = train_py_run(model + small, batch_size, num_steps=12)
        print(
            f"zoo {label:21s} published, batch {ZOO_BATCH_SIZE}: {rate:7,.1f} ex/s, peak "
            f"{memory / 2**30:5.2f} GiB; small, batch {batch_size}: {small_rate:7,.1f} ex/s, "
            f"peak {small_memory / 2**30:5.2f} GiB"
        )


# The real 2018 video-level shards' shape: 14,547 training videos in 50 files, 2,952 held
# out in 10 (split between validate and test here).
STARTUP_DATA = (("train", 14547, 50), ("validate", 2952, 10), ("test", 2952, 10))
STARTUP_TRAIN_FLAGS = (
    "--feature_names=mean_rgb,mean_audio",
    "--feature_sizes=1024,128",
    "--batch_size=1024",
    "--num_epochs=100",  # More data than 100 steps read: the pipeline is left mid-read.
    "--max_steps=100",
    "--start_new_model",
)
# Each phase ends at the first log line matching its pattern; "exit" ends with the process.
STARTUP_PHASES = {
    "train.py": (
        ("import", r"Tensorflow version"),
        ("build", r"Building a new model|Restoring from checkpoint"),
        ("pipeline", r"Entering training loop"),
        ("first step", r"training step 1 \|"),
        ("loop", r"Exited training loop"),
    ),
    "eval.py": (
        ("import", r"Loading checkpoint for eval"),
        ("restore+export", r"enter eval_once loop"),
        ("first batch", r"examples_processed: "),
        ("loop", r"Total: examples_processed"),
    ),
    "inference.py": (
        ("import", r"loading saved model"),
        ("load+first batch", r"num examples processed"),
        ("loop", r"Done with inference"),
    ),
}


def startup_data_dir() -> str:
    """Returns video-level sample data of the real shards' shape, written once per run."""
    output_dir = os.path.join(scratch_dir(), "startup_data")
    for split, num_videos, num_shards in STARTUP_DATA:
        subprocess.run(
            [
                sys.executable,
                os.path.join(REPO, "make_sample_data.py"),
                f"--output_dir={output_dir}/{split}",
                *(
                    f"--num_{name}_videos={num_videos if name == split else 0}"
                    for name in ("train", "validate", "test")
                ),
                f"--num_shards={num_shards}",
                "--formats=video",
                f"--seed={num_shards}",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return output_dir


def log_time(line: str) -> float | None:
    """Returns the time.time() of an absl log line (I1202 13:23:39.876477 ...), if it is one."""
    match = re.match(r"[IWEF](\d{4} \d\d:\d\d:\d\d\.\d{6}) ", line)
    if not match:
        return None
    stamp = datetime.datetime.strptime(
        f"{datetime.date.today().year}{match[1]}", "%Y%m%d %H:%M:%S.%f"
    )
    return stamp.timestamp()


def timed_phases(script: str, arguments: list[str]) -> dict[str, float]:
    """Runs a script as a user does; returns the seconds of each of its phases and in all.

    Phases end at log lines (STARTUP_PHASES); "exit" runs from the last log line to the
    end of the process. Also returns train.py's median Examples/sec after step 10.
    """
    scripts_dir = FLAGS.scripts_dir or REPO
    start = time.time()
    process = subprocess.run(
        [sys.executable, os.path.join(scripts_dir, script), *arguments],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=scripts_dir,
    )
    end = time.time()
    if process.returncode:
        raise RuntimeError(f"{script} {' '.join(arguments)} failed:\n{process.stderr[-3000:]}")
    lines = [(log_time(line), line) for line in process.stderr.splitlines()]
    lines = [(stamp, line) for stamp, line in lines if stamp is not None]
    phases, phase_start = {}, start
    for name, pattern in STARTUP_PHASES[script]:
        phase_end = next(stamp for stamp, line in lines if re.search(pattern, line))
        phases[name], phase_start = phase_end - phase_start, phase_end
    phases["exit"] = end - lines[-1][0]
    phases["wall"] = end - start
    rates = [float(rate) for rate in re.findall(r"Examples/sec: ([0-9.]+)", process.stderr)]
    if len(rates) > 10:
        phases["examples/s"] = statistics.median(rates[10:])
    return phases


def bench_startup() -> None:
    """train.py, eval.py and inference.py timed from start to exit, phase by phase.

    On data of the real video-level shards' shape: train.py runs 100 steps of batch 1024
    (LogisticModel, then MoeModel), eval.py --run_once and inference.py take the Logistic
    model. Medians over --repeats runs of each command.
    """
    data = startup_data_dir()
    train_dir = os.path.join(scratch_dir(), "startup_model")
    train_data = f"--train_data_pattern={data}/train/video/train*.tfrecord"
    runs = {
        "train.py MoeModel": (
            "train.py",
            [train_data, *STARTUP_TRAIN_FLAGS, "--model=MoeModel", f"--train_dir={train_dir}_moe"],
        ),
        "train.py LogisticModel": (
            "train.py",
            [train_data, *STARTUP_TRAIN_FLAGS, f"--train_dir={train_dir}"],
        ),
        "eval.py --run_once": (
            "eval.py",
            [
                f"--train_dir={train_dir}",
                "--run_once",
                f"--eval_data_pattern={data}/validate/video/validate*.tfrecord",
            ],
        ),
        "inference.py": (
            "inference.py",
            [
                f"--train_dir={train_dir}",
                f"--output_file={train_dir}/predictions.csv",
                f"--input_data_pattern={data}/test/video/test*.tfrecord",
            ],
        ),
    }
    for label, (script, arguments) in runs.items():
        timings = [timed_phases(script, arguments) for _ in range(FLAGS.repeats)]
        medians = {name: statistics.median(t[name] for t in timings) for name in timings[0]}
        text = " | ".join(
            f"{name} {value:,.0f}" if name == "examples/s" else f"{name} {value:.2f}s"
            for name, value in medians.items()
        )
        print(f"startup {label:22s} {text}", flush=True)


BENCHMARKS = {
    "readers": bench_readers,
    "train": bench_train,
    "metrics": bench_metrics.run_metrics_bench,
    "eval": bench_eval,
    "inference": bench_inference,
    "frame": bench_frame,
    "mixed": bench_mixed,
    "gpu": bench_gpu,
    "zoo": bench_zoo,
    "startup": bench_startup,
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
