r"""Writes a small, learnable YouTube-8M-format data set.

The real data set is 31 GB (video level) to 1.5 TB (frame level); this writes the same
record formats from a hidden class structure, so that the whole pipeline can be tried and
tested in minutes:

  <output_dir>/video/{train,validate,test}NNNN.tfrecord   tf.train.Example
      id (bytes), labels (int64 list), mean_rgb (1024 floats), mean_audio (128 floats)
  <output_dir>/frame/{train,validate,test}NNNN.tfrecord   tf.train.SequenceExample
      context: id, labels; feature lists: rgb, audio (one uint8 byte string per frame)

How the data is learnable: every class has a random prototype direction; a video's
features are the mean of its labels' prototypes plus noise, quantized to uint8 as the
real features are. Frames are the video's quantized base vector plus integer noise that
comes in +d/-d pairs, so the mean of a video's quantized frames is exactly its base
vector and the video-level mean features equal the mean of the dequantized frames
without generating frames that are not written.

Example:
  python make_sample_data.py --output_dir=/tmp/yt8m_sample --num_train_videos=2000
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

import cli
import features
from errors import UserError
from settings import setting


@dataclasses.dataclass(frozen=True)
class SampleDataConfig:
    """What sample data to write, each a flag of make_sample_data.py."""

    output_dir: str = setting("/tmp/yt8m_sample", "Directory to write the data set to.")
    seed: int = setting(0, "Random seed; the same seed writes the same files.")
    num_classes: int = setting(3862)
    num_train_videos: int = setting(2000, "Videos in the train split.")
    num_validate_videos: int = setting(500, "Videos in the validate split.")
    num_test_videos: int = setting(500, "Videos in the test split.")
    num_shards: int = setting(4, "Files per split (train0000.tfrecord, ...).")
    mean_labels: float = setting(3.0, "Average number of labels per video (at least 1).")
    mean_frames: int = setting(
        60,
        "Typical frames per video. 80%% of videos have 5..2*mean_frames-5 frames, 10%% fewer "
        "than 5 and 10%% more than 300, so truncation and padding are both exercised.",
    )
    formats: list = setting(["video", "frame"], "Which formats to write: video, frame.")
    id_key: str = setting("id", "Key of the video id: 'id' (2018+) or 'video_id' (2017).")


RGB_SIZE = 1024
AUDIO_SIZE = 128
FEATURE_SIZE = RGB_SIZE + AUDIO_SIZE
SPLITS = ("train", "validate", "test")
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


def frame_level_example(video_id: bytes, labels: np.ndarray, frames: np.ndarray, id_key):
    """Returns a serialized frame-level tf.train.SequenceExample."""

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
    temporary = path + ".tmp"
    with tf.io.TFRecordWriter(temporary) as writer:
        for record in records:
            writer.write(record)
    tf.io.gfile.rename(temporary, path, overwrite=True)


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


def main(config: SampleDataConfig) -> None:
    """Writes every split in every requested format."""
    unknown = set(config.formats) - {"video", "frame"}
    if unknown:
        raise UserError(f"--formats: unknown format(s) {sorted(unknown)}; use video, frame.")
    rng = np.random.default_rng(config.seed)
    prototypes = class_prototypes(rng, config.num_classes)
    split_sizes = dict(
        zip(SPLITS, (config.num_train_videos, config.num_validate_videos, config.num_test_videos))
    )
    for data_format in config.formats:
        tf.io.gfile.makedirs(os.path.join(config.output_dir, data_format))
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
        formats = ", ".join(config.formats)
        print(f"{split}: {num_videos} videos in {config.num_shards} shards ({formats})")
    print(f"Wrote sample data to {config.output_dir}")


if __name__ == "__main__":
    cli.run(main, SampleDataConfig)
