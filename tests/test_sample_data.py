"""make_sample_data.py writes the real YouTube-8M formats, deterministically."""

import glob
import os

import numpy as np
import tensorflow as tf
from conftest import make_sample_data

import features


def records(pattern: str) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(sorted(glob.glob(pattern)))]


def test_splits_and_shards_are_named_like_the_real_data_set(sample_data):
    for data_format in ("video", "frame"):
        names = sorted(os.listdir(os.path.join(sample_data, data_format)))
        assert names == [
            f"{split}{i:04d}.tfrecord" for split in ("test", "train", "validate") for i in range(3)
        ]


def test_video_level_records_have_the_documented_features(sample_data):
    example = tf.train.Example.FromString(records(f"{sample_data}/video/train0000.tfrecord")[0])
    features = example.features.feature
    assert set(features) == {"id", "labels", "mean_rgb", "mean_audio"}
    assert len(features["mean_rgb"].float_list.value) == 1024
    assert len(features["mean_audio"].float_list.value) == 128
    assert len(features["labels"].int64_list.value) >= 1


def test_frame_level_records_hold_one_uint8_string_per_frame(sample_data):
    example = tf.train.SequenceExample.FromString(
        records(f"{sample_data}/frame/train0000.tfrecord")[0]
    )
    assert set(example.context.feature) == {"id", "labels"}
    rgb = example.feature_lists.feature_list["rgb"].feature
    audio = example.feature_lists.feature_list["audio"].feature
    assert len(rgb) == len(audio) >= 1
    assert all(len(frame.bytes_list.value[0]) == 1024 for frame in rgb)
    assert all(len(frame.bytes_list.value[0]) == 128 for frame in audio)


def test_video_level_mean_is_the_mean_of_the_dequantized_frames(sample_data):
    videos = records(f"{sample_data}/video/validate*.tfrecord")
    frames = records(f"{sample_data}/frame/validate*.tfrecord")
    assert len(videos) == len(frames) == 100
    for video_bytes, frame_bytes in zip(videos, frames):
        video = tf.train.Example.FromString(video_bytes).features.feature
        sequence = tf.train.SequenceExample.FromString(frame_bytes)
        assert sequence.context.feature["id"].bytes_list.value == video["id"].bytes_list.value
        rgb = np.stack(
            [
                np.frombuffer(f.bytes_list.value[0], np.uint8)
                for f in sequence.feature_lists.feature_list["rgb"].feature
            ]
        )
        expected = features.dequantize(rgb.astype(np.float64)).mean(axis=0)
        np.testing.assert_allclose(video["mean_rgb"].float_list.value, expected, atol=1e-5)


def test_frame_counts_include_short_and_long_videos(sample_data):
    counts = [
        len(tf.train.SequenceExample.FromString(r).feature_lists.feature_list["rgb"].feature)
        for r in records(f"{sample_data}/frame/train*.tfrecord")
    ]
    assert min(counts) < 5
    assert max(counts) > 300


def test_same_seed_writes_identical_files_and_another_seed_does_not(tmp_path):
    args = (
        "--num_train_videos=50",
        "--num_validate_videos=0",
        "--num_test_videos=0",
        "--num_shards=1",
        "--mean_frames=5",
        "--num_classes=50",
    )
    first = make_sample_data(str(tmp_path / "a"), "--seed=7", *args)
    again = make_sample_data(str(tmp_path / "b"), "--seed=7", *args)
    other = make_sample_data(str(tmp_path / "c"), "--seed=8", *args)
    for data_format in ("video", "frame"):
        path = f"{data_format}/train0000.tfrecord"
        content = open(os.path.join(first, path), "rb").read()
        assert content == open(os.path.join(again, path), "rb").read()
        assert content != open(os.path.join(other, path), "rb").read()


def test_labels_stay_inside_a_custom_vocabulary(tmp_path):
    out = make_sample_data(
        str(tmp_path),
        "--num_classes=20",
        "--num_train_videos=200",
        "--num_validate_videos=0",
        "--num_test_videos=0",
        "--num_shards=1",
        "--formats=video",
    )
    labels = [
        tf.train.Example.FromString(r).features.feature["labels"].int64_list.value
        for r in records(f"{out}/video/train0000.tfrecord")
    ]
    flat = [label for video in labels for label in video]
    assert min(flat) >= 0 and max(flat) < 20
    assert 2.5 < len(flat) / len(labels) < 3.5
