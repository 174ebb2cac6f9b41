r"""Writes a small, learnable YouTube-8M-format data set.

The real data set is 31 GB (video level) to 1.5 TB (frame level); this writes the same
record formats from a hidden class structure, so that the whole pipeline can be tried and
tested in minutes:

  <output_dir>/video/{train,validate,test}NNNN.tfrecord   tf.train.Example
      id (bytes), labels (int64 list), mean_rgb (1024 floats), mean_audio (128 floats)
  <output_dir>/frame/{train,validate,test}NNNN.tfrecord   tf.train.SequenceExample
      context: id, labels; feature lists: rgb, audio (one uint8 byte string per frame)
  <output_dir>/segment/{validate,test}NNNN.tfrecord   tf.train.SequenceExample, 2019 format
      context: id, labels, segment_start_times, segment_end_times, segment_labels,
      segment_scores; feature lists: rgb, audio (as frame/)

How the data is learnable: every class has a random prototype direction; a video's
features are the mean of its labels' prototypes plus noise, quantized to uint8 as the
real features are. Frames are the video's quantized base vector plus integer noise that
comes in +d/-d pairs, so the mean of a video's quantized frames is exactly its base
vector and the video-level mean features equal the mean of the dequantized frames
without generating frames that are not written.

The segment splits (ids sv000000..., st...; only validate and test, as in 2019) rate
5-frame segments for classes of the 1,000-class vocabulary in segment_label_ids.csv.
Each class's prototype is split into two directions of equal norm, an object o and a
context x, with prototype = (o + x)/sqrt(2); a positive segment's frames carry the class
as o alone, a negative one's as x alone. A model that learned the
prototypes from the video-level labels scores both alike; one fine-tuned on segment
labels can learn o from x. Segment data draws from random streams of its own, so it
leaves the video/ and frame/ files unchanged.

Example:
  python make_sample_data.py --output_dir=/tmp/yt8m_sample --num_train_videos=2000
"""

import quiet_tensorflow  # noqa: F401 (first: hides TensorFlow's start-up noise)

# isort: split
import dataclasses
import os

import numpy as np
import tensorflow as tf

import atomic_write
import cli
import features
from errors import UserError
from settings import AT_LEAST_ONE, NON_NEGATIVE, Range, Settings, setting


@dataclasses.dataclass(frozen=True)
class SampleDataConfig(Settings):
    """What sample data to write, each a flag of make_sample_data.py."""

    output_dir: str = setting("/tmp/yt8m_sample", "Directory to write the data set to.")
    seed: int = setting(0, "Random seed; the same seed writes the same files.", NON_NEGATIVE)
    num_classes: int = setting(3862)
    num_train_videos: int = setting(2000, "Videos in the train split.", NON_NEGATIVE)
    num_validate_videos: int = setting(500, "Videos in the validate split.", NON_NEGATIVE)
    num_test_videos: int = setting(500, "Videos in the test split.", NON_NEGATIVE)
    num_shards: int = setting(4, "Files per split (train0000.tfrecord, ...).", AT_LEAST_ONE)
    mean_labels: float = setting(3.0, "Average number of labels per video.", Range(1))
    mean_frames: int = setting(
        60,
        "Typical frames per video. 80%% of videos have 5..2*mean_frames-5 frames, 10%% fewer "
        "than 5 and 10%% more than 300, so truncation and padding are both exercised.",
        AT_LEAST_ONE,
    )
    formats: list = setting(
        ["video", "frame", "segment"],
        "Which formats to write: video, frame, segment (2019 segment-rated validate and test).",
    )
    id_key: str = setting("id", "Key of the video id: 'id' (2018+) or 'video_id' (2017).")


RGB_SIZE = 1024
AUDIO_SIZE = 128
FEATURE_SIZE = RGB_SIZE + AUDIO_SIZE
SPLITS = ("train", "validate", "test")
FORMATS = ("video", "frame", "segment")
# The 2019 data set rated segments in its validate and test splits only.
SEGMENT_SPLITS = ("validate", "test")
SEGMENT_FRAMES = 5
SEGMENTS_PER_CLASS = 5
# The frames per video that the readers keep (readers.py max_frames).
MAX_SEGMENT_VIDEO_FRAMES = 300
# A video with a second vocabulary class has it rated too with this probability (about
# 30% of the videos), for this many of the first class's segments.
SECOND_CLASS_PROBABILITY = 0.75
SHARED_SEGMENTS = 2
POSITIVE_SEGMENT_PROBABILITY = 0.6
# How far a rated segment's frames move along +/-(o - x)/sqrt(2), per 1/num_labels. Any
# value keeps positives and negatives alike to a video-level model (o - x is orthogonal
# to the prototype); 0.6, the prototypes' weight in a video's base vector, leaves a
# positive segment's class as o alone and a negative one's as x alone.
SEGMENT_SIGNAL_STRENGTH = 0.6
# Second key word of the segment data's random streams, distinct from the frame streams'
# [seed, first_index + 1]; the third word (never 0) names the stream.
SEGMENT_STREAM = 2019
SEGMENT_LABEL_IDS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "segment_label_ids.csv"
)
# Frame noise amplitude in quantization steps; bases are kept this far from 0 and 255 so
# that base +/- noise never clips and the frame mean stays exactly the base.
FRAME_NOISE_STEPS = 24


def class_prototypes(rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """Returns one random feature-space direction per class, [num_classes, 1152]."""
    return rng.normal(0.0, 1.0, size=(num_classes, FEATURE_SIZE)).astype(np.float32)


def class_popularity(num_classes: int) -> np.ndarray:
    """Returns a Zipf-like label distribution, as skewed as the real vocabulary's."""
    weights = 1.0 / np.arange(10, num_classes + 10, dtype=np.float64) ** 0.9
    return weights / weights.sum()


def video_labels(
    rng: np.random.Generator, num_videos: int, num_classes: int, mean_labels: float
) -> list[np.ndarray]:
    """Returns each video's sorted, distinct class ids (1 + Poisson(mean_labels - 1))."""
    counts = np.minimum(1 + rng.poisson(max(mean_labels - 1.0, 0.0), size=num_videos), 20)
    popularity = class_popularity(num_classes)
    draws = rng.choice(num_classes, size=int(counts.sum()), p=popularity)
    per_video = np.split(draws, np.cumsum(counts)[:-1])
    return [np.unique(labels) for labels in per_video]


def quantized_bases(
    rng: np.random.Generator, labels: list[np.ndarray], prototypes: np.ndarray
) -> np.ndarray:
    """Returns each video's quantized base feature vector, uint8 [num_videos, 1152]."""
    label_means = np.stack([prototypes[video].mean(axis=0) for video in labels])
    values = 0.6 * label_means + rng.normal(0.0, 0.35, size=label_means.shape)
    quantized = np.round((values - features.MIN_QUANTIZED_VALUE) * 255.0 / 4.0)
    return np.clip(quantized, FRAME_NOISE_STEPS, 255 - FRAME_NOISE_STEPS).astype(np.uint8)


def frame_counts(rng: np.random.Generator, num_videos: int, mean_frames: int) -> np.ndarray:
    """Returns frames per video: mostly typical, 10% shorter than 5, 10% longer than 300."""
    typical = rng.integers(5, max(2 * mean_frames - 5, 6), size=num_videos)
    short = rng.integers(1, 5, size=num_videos)
    long = rng.integers(301, 311, size=num_videos)
    kind = rng.random(num_videos)
    return np.where(kind < 0.1, short, np.where(kind < 0.2, long, typical))


def video_frames(rng: np.random.Generator, base: np.ndarray, num_frames: int) -> np.ndarray:
    """Returns a video's quantized frames, uint8 [num_frames, 1152], whose mean is `base`."""
    half = rng.integers(
        -FRAME_NOISE_STEPS, FRAME_NOISE_STEPS + 1, size=(num_frames // 2, FEATURE_SIZE)
    )
    noise = np.zeros((num_frames, FEATURE_SIZE), dtype=np.int16)
    noise[0 : 2 * len(half) : 2] = half
    noise[1 : 2 * len(half) : 2] = -half
    return (base.astype(np.int16) + noise).astype(np.uint8)


def video_level_example(video_id: bytes, labels: np.ndarray, mean_features: np.ndarray, id_key):
    """Returns a serialized video-level tf.train.Example."""
    feature = tf.train.Feature
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                id_key: feature(bytes_list=tf.train.BytesList(value=[video_id])),
                "labels": feature(int64_list=tf.train.Int64List(value=labels.tolist())),
                "mean_rgb": feature(
                    float_list=tf.train.FloatList(value=mean_features[:RGB_SIZE].tolist())
                ),
                "mean_audio": feature(
                    float_list=tf.train.FloatList(value=mean_features[RGB_SIZE:].tolist())
                ),
            }
        )
    ).SerializeToString(deterministic=True)


def frame_level_example(
    video_id: bytes, labels: np.ndarray, frames: np.ndarray, id_key, extra_context=None
):
    """Returns a serialized frame-level tf.train.SequenceExample.

    extra_context: further context features by name (the segment ratings), or None.
    """

    def bytes_per_frame(matrix):
        values = [
            tf.train.Feature(bytes_list=tf.train.BytesList(value=[row.tobytes()])) for row in matrix
        ]
        return tf.train.FeatureList(feature=values)

    feature = tf.train.Feature
    return tf.train.SequenceExample(
        context=tf.train.Features(
            feature={
                id_key: feature(bytes_list=tf.train.BytesList(value=[video_id])),
                "labels": feature(int64_list=tf.train.Int64List(value=labels.tolist())),
                **(extra_context or {}),
            }
        ),
        feature_lists=tf.train.FeatureLists(
            feature_list={
                "rgb": bytes_per_frame(frames[:, :RGB_SIZE]),
                "audio": bytes_per_frame(frames[:, RGB_SIZE:]),
            }
        ),
    ).SerializeToString(deterministic=True)


def write_records(path: str, records) -> None:
    """Writes serialized records to a TFRecord file under a temporary name, then renames."""
    with (
        atomic_write.replaced_atomically(path) as temporary,
        tf.io.TFRecordWriter(temporary) as writer,
    ):
        for record in records:
            writer.write(record)


def write_split(config: SampleDataConfig, split: str, first_index: int, labels, bases, rng) -> None:
    """Writes one split's shards in each requested format."""
    num_videos = len(labels)
    video_ids = [f"{split[0]}{first_index + i:06d}".encode() for i in range(num_videos)]
    shards = np.array_split(np.arange(num_videos), config.num_shards)
    if "video" in config.formats:
        means = features.dequantize(bases.astype(np.float64)).astype(np.float32)
        for shard_index, shard in enumerate(shards):
            write_records(
                shard_path(config, "video", split, shard_index),
                (
                    video_level_example(video_ids[i], labels[i], means[i], config.id_key)
                    for i in shard
                ),
            )
    if "frame" in config.formats:
        counts = frame_counts(rng, num_videos, config.mean_frames)
        for shard_index, shard in enumerate(shards):
            write_records(
                shard_path(config, "frame", split, shard_index),
                (
                    frame_level_example(
                        video_ids[i],
                        labels[i],
                        video_frames(rng, bases[i], counts[i]),
                        config.id_key,
                    )
                    for i in shard
                ),
            )


def shard_path(config: SampleDataConfig, data_format: str, split: str, shard_index: int) -> str:
    """Returns the path of one shard, named like the real data set's files."""
    return os.path.join(config.output_dir, data_format, f"{split}{shard_index:04d}.tfrecord")


@dataclasses.dataclass(frozen=True)
class SegmentClasses:
    """The classes segments are rated for, and their object and context directions."""

    vocabulary: np.ndarray  # sorted class ids, int64
    objects: np.ndarray  # o, [num_classes, 1152]
    contexts: np.ndarray  # x, [num_classes, 1152]


@dataclasses.dataclass(frozen=True)
class RatedSegments:
    """One video's segment ratings: parallel arrays, entry i rates one class of one segment."""

    labels: np.ndarray  # class ids, int64
    start_times: np.ndarray  # first frame of each segment, a multiple of SEGMENT_FRAMES
    scores: np.ndarray  # 1.0 positive, 0.0 negative, float32


def segment_vocabulary(num_classes: int) -> np.ndarray:
    """Returns the ids of segment_label_ids.csv below num_classes, sorted.

    The file lists the 1,000 classes that the 2019 data set rated segments for.
    """
    try:
        with tf.io.gfile.GFile(SEGMENT_LABEL_IDS) as file:
            words = file.read().split()
    except tf.errors.NotFoundError:
        raise UserError(
            f"The segment format needs {SEGMENT_LABEL_IDS}, which is missing."
        ) from None
    ids = np.array([int(word) for word in words if word != "Index"], dtype=np.int64)
    vocabulary = np.unique(ids[ids < num_classes])
    if not len(vocabulary):
        raise UserError(
            f"{{num_classes}}={num_classes} is too small for the segment format: no class of "
            f"segment_label_ids.csv is below it (the smallest is {ids.min()}).",
            "num_classes",
        )
    return vocabulary


def object_and_context_directions(
    seed: int, prototypes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Returns each class's object and context directions o, x, each [num_classes, 1152].

    With z ~ N(0, 1) and p the prototype, o = (p - z)/sqrt(2) and x = (p + z)/sqrt(2), so
    (o + x)/sqrt(2) = p: what the video-level labels teach (p) says nothing about which
    of o, x a segment shows. z is drawn independently of p, then made orthogonal to it,
    so that |o| = |x| exactly; otherwise p.(o - x) = -sqrt(2) p.z, about 3% of p.p in 1152
    dimensions, would let a model that learned p tell positives of some classes apart.
    """
    rng = np.random.default_rng([seed, SEGMENT_STREAM, 1])
    z = rng.normal(0.0, 1.0, size=prototypes.shape)
    p = prototypes.astype(np.float64)
    z -= p * (np.sum(z * p, axis=1, keepdims=True) / np.sum(p * p, axis=1, keepdims=True))
    return ((p - z) / np.sqrt(2)).astype(np.float32), ((p + z) / np.sqrt(2)).astype(np.float32)


def segment_video_labels(
    rng: np.random.Generator,
    num_videos: int,
    num_classes: int,
    mean_labels: float,
    vocabulary: np.ndarray,
) -> list[np.ndarray]:
    """Returns each video's labels as video_labels does, at least one in the vocabulary.

    A video without a vocabulary label gets one more, drawn with the classes' popularity
    restricted to the vocabulary, so that every video has a class to rate segments for.
    """
    labels = video_labels(rng, num_videos, num_classes, mean_labels)
    popularity = class_popularity(num_classes)[vocabulary]
    extra = rng.choice(vocabulary, size=num_videos, p=popularity / popularity.sum())
    return [
        video if np.isin(video, vocabulary).any() else np.union1d(video, [added])
        for video, added in zip(labels, extra)
    ]


def segment_frame_counts(rng: np.random.Generator, num_videos: int, mean_frames: int):
    """Returns frames per segment-rated video, 25..max(2*mean_frames, 30), at most 300.

    At least 25 so that 5 segments fit; at most the 300 frames the readers keep, so that
    every rated segment is read.
    """
    fewest = SEGMENTS_PER_CLASS * SEGMENT_FRAMES
    most = min(max(2 * mean_frames, fewest + 5), MAX_SEGMENT_VIDEO_FRAMES)
    return rng.integers(fewest, most + 1, size=num_videos)


def rated_segments(
    rng: np.random.Generator, labels: np.ndarray, vocabulary: np.ndarray, num_frames: int
) -> RatedSegments:
    """Returns a video's segment ratings, each positive with POSITIVE_SEGMENT_PROBABILITY.

    One of the video's vocabulary classes is rated for 5 whole segments (start + 5 <=
    num_frames); a second one, when the video has one (SECOND_CLASS_PROBABILITY), for 2
    of those same segments, so start times repeat as they do in the 2019 data. Each
    class's starts are ascending.
    """
    candidates = np.intersect1d(labels, vocabulary)
    second = len(candidates) > 1 and rng.random() < SECOND_CLASS_PROBABILITY
    classes = rng.choice(candidates, size=2 if second else 1, replace=False)
    all_starts = np.arange(0, num_frames - SEGMENT_FRAMES + 1, SEGMENT_FRAMES)
    starts = np.sort(rng.choice(all_starts, size=SEGMENTS_PER_CLASS, replace=False))
    per_class = [starts, np.sort(rng.choice(starts, size=SHARED_SEGMENTS, replace=False))]
    per_class = per_class[: len(classes)]
    start_times = np.concatenate(per_class).astype(np.int64)
    return RatedSegments(
        labels=np.repeat(classes, [len(s) for s in per_class]).astype(np.int64),
        start_times=start_times,
        scores=(rng.random(len(start_times)) < POSITIVE_SEGMENT_PROBABILITY).astype(np.float32),
    )


def frames_with_segment_signal(
    frames: np.ndarray, num_labels: int, segments: RatedSegments, classes: SegmentClasses
) -> np.ndarray:
    """Returns the frames with each rated class shown as o (positive) or x (negative).

    A video's base vector holds class c as s/L * p_c = s/L * (o_c + x_c)/sqrt(2) (s =
    SEGMENT_SIGNAL_STRENGTH, L = num_labels). Adding +s/L * (o_c - x_c)/sqrt(2) to a
    segment's frames leaves sqrt(2) s/L * o_c there, subtracting it sqrt(2) s/L * x_c:
    the same norm and the same projection on p_c, different directions. The moves are
    summed in feature units, rounded to quantization steps (255/4 per unit) and the
    frames clipped to uint8; frames outside rated segments are unchanged.
    """
    moves = np.zeros(frames.shape, dtype=np.float64)
    for label, start, score in zip(segments.labels, segments.start_times, segments.scores):
        direction = (classes.objects[label] - classes.contexts[label]) / np.sqrt(2)
        sign = 1.0 if score > 0.5 else -1.0
        moves[start : start + SEGMENT_FRAMES] += (
            sign * SEGMENT_SIGNAL_STRENGTH / num_labels * direction
        )
    steps = np.round(moves * 255.0 / 4.0)
    return np.clip(frames.astype(np.float64) + steps, 0, 255).astype(np.uint8)


def segment_context(segments: RatedSegments) -> dict:
    """Returns the 2019 segment-rating context features of one video, by name."""

    def int64s(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values.tolist()))

    return {
        "segment_labels": int64s(segments.labels),
        "segment_start_times": int64s(segments.start_times),
        "segment_end_times": int64s(segments.start_times + SEGMENT_FRAMES),
        "segment_scores": tf.train.Feature(
            float_list=tf.train.FloatList(value=segments.scores.tolist())
        ),
    }


def write_segment_split(
    config: SampleDataConfig,
    split: str,
    video_ids: list[bytes],
    prototypes: np.ndarray,
    classes: SegmentClasses,
    rng: np.random.Generator,
) -> None:
    """Writes one segment-rated split's shards, one video per id."""
    num_videos = len(video_ids)
    labels = segment_video_labels(
        rng, num_videos, config.num_classes, config.mean_labels, classes.vocabulary
    )
    bases = quantized_bases(rng, labels, prototypes)
    counts = segment_frame_counts(rng, num_videos, config.mean_frames)

    def record(i):
        segments = rated_segments(rng, labels[i], classes.vocabulary, counts[i])
        frames = video_frames(rng, bases[i], counts[i])
        frames = frames_with_segment_signal(frames, len(labels[i]), segments, classes)
        context = segment_context(segments)
        return frame_level_example(video_ids[i], labels[i], frames, config.id_key, context)

    for shard_index, shard in enumerate(np.array_split(np.arange(num_videos), config.num_shards)):
        write_records(shard_path(config, "segment", split, shard_index), (record(i) for i in shard))


def write_segment_splits(
    config: SampleDataConfig, prototypes: np.ndarray, classes: SegmentClasses
) -> None:
    """Writes the segment-rated validate and test splits, ids s + split letter + index.

    Each split draws from a stream of its own, [seed, SEGMENT_STREAM, 2 or 3], so the
    segment data never changes the other formats' files.
    """
    sizes = dict(zip(SEGMENT_SPLITS, (config.num_validate_videos, config.num_test_videos)))
    first_index = 0
    for stream, (split, num_videos) in enumerate(sizes.items(), start=2):
        if num_videos == 0:
            continue
        video_ids = [f"s{split[0]}{first_index + i:06d}".encode() for i in range(num_videos)]
        rng = np.random.default_rng([config.seed, SEGMENT_STREAM, stream])
        write_segment_split(config, split, video_ids, prototypes, classes, rng)
        first_index += num_videos
        print(f"{split}: {num_videos} videos in {config.num_shards} shards (segment)")


def write_video_and_frame_splits(
    config: SampleDataConfig, rng: np.random.Generator, prototypes: np.ndarray
) -> None:
    """Writes every split in the requested formats of video, frame."""
    split_sizes = dict(
        zip(SPLITS, (config.num_train_videos, config.num_validate_videos, config.num_test_videos))
    )
    formats = ", ".join(f for f in config.formats if f != "segment")
    first_index = 0
    for split, num_videos in split_sizes.items():
        if num_videos == 0:
            continue
        labels = video_labels(rng, num_videos, config.num_classes, config.mean_labels)
        bases = quantized_bases(rng, labels, prototypes)
        # Frame noise draws from its own stream, so adding a format never changes the videos.
        frame_rng = np.random.default_rng([config.seed, first_index + 1])
        write_split(config, split, first_index, labels, bases, frame_rng)
        first_index += num_videos
        print(f"{split}: {num_videos} videos in {config.num_shards} shards ({formats})")


def main(config: SampleDataConfig) -> None:
    """Writes every split in every requested format."""
    unknown = set(config.formats) - set(FORMATS)
    if unknown:
        raise UserError(
            f"--formats: unknown format(s) {sorted(unknown)}; use {', '.join(FORMATS)}."
        )
    rng = np.random.default_rng(config.seed)
    prototypes = class_prototypes(rng, config.num_classes)
    if "segment" in config.formats:
        # Before writing anything, so that a too small --num_classes fails at once.
        classes = SegmentClasses(
            segment_vocabulary(config.num_classes),
            *object_and_context_directions(config.seed, prototypes),
        )
    with atomic_write.write_failures_explained(config.output_dir, "nothing was written"):
        for data_format in config.formats:
            tf.io.gfile.makedirs(os.path.join(config.output_dir, data_format))
    if {"video", "frame"} & set(config.formats):
        write_video_and_frame_splits(config, rng, prototypes)
    if "segment" in config.formats:
        write_segment_splits(config, prototypes, classes)
    print(f"Wrote sample data to {config.output_dir}")


if __name__ == "__main__":
    cli.run(main, SampleDataConfig)
