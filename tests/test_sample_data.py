"""make_sample_data.py writes the real YouTube-8M formats, deterministically."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, make_sample_data

import features
import make_sample_data as sample_writer
from errors import UserError


def records(pattern: str) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(sorted(glob.glob(pattern)))]


def segment_videos(pattern: str) -> list[dict]:
    """Returns each segment-rated record's id, labels, ratings and float frames [n, 1152]."""
    videos = []
    for record in records(pattern):
        sequence = tf.train.SequenceExample.FromString(record)
        context = sequence.context.feature
        frames = np.concatenate(
            [
                np.stack(
                    [
                        np.frombuffer(f.bytes_list.value[0], np.uint8)
                        for f in sequence.feature_lists.feature_list[name].feature
                    ]
                )
                for name in ("rgb", "audio")
            ],
            axis=1,
        )
        videos.append(
            {
                "id": context["id"].bytes_list.value[0].decode(),
                "labels": np.array(context["labels"].int64_list.value),
                "starts": np.array(context["segment_start_times"].int64_list.value),
                "ends": np.array(context["segment_end_times"].int64_list.value),
                "segment_labels": np.array(context["segment_labels"].int64_list.value),
                "scores": np.array(context["segment_scores"].float_list.value),
                "frames": features.dequantize(frames.astype(np.float64)),
            }
        )
    return videos


@pytest.fixture(scope="module")
def segment_validate(sample_data) -> list[dict]:
    return segment_videos(f"{sample_data}/segment/validate*.tfrecord")


def test_splits_and_shards_are_named_like_the_real_data_set(sample_data):
    for data_format in ("video", "frame"):
        names = sorted(os.listdir(os.path.join(sample_data, data_format)))
        assert names == [
            f"{split}{i:04d}.tfrecord" for split in ("test", "train", "validate") for i in range(3)
        ]
    names = sorted(os.listdir(os.path.join(sample_data, "segment")))
    assert names == [f"{split}{i:04d}.tfrecord" for split in ("test", "validate") for i in range(3)]


def test_segment_records_have_the_2019_context_and_feature_lists(sample_data):
    frame_ids = {
        tf.train.SequenceExample.FromString(r).context.feature["id"].bytes_list.value[0]
        for r in records(f"{sample_data}/frame/*.tfrecord")
    }
    for split, prefix in (("validate", b"sv"), ("test", b"st")):
        sequences = [
            tf.train.SequenceExample.FromString(r)
            for r in records(f"{sample_data}/segment/{split}*.tfrecord")
        ]
        assert len(sequences) == 100
        for sequence in sequences:
            assert set(sequence.context.feature) == {
                "id",
                "labels",
                "segment_start_times",
                "segment_end_times",
                "segment_labels",
                "segment_scores",
            }
            assert set(sequence.feature_lists.feature_list) == {"rgb", "audio"}
            video_id = sequence.context.feature["id"].bytes_list.value[0]
            assert video_id.startswith(prefix) and video_id not in frame_ids


def test_segment_ratings_are_parallel_lists_of_whole_five_frame_segments(segment_validate):
    vocabulary = set(np.loadtxt(os.path.join(REPO, "segment_label_ids.csv"), skiprows=1))
    for video in segment_validate:
        num_frames = len(video["frames"])
        starts = video["starts"]
        assert len(starts) == len(video["ends"]) == len(video["segment_labels"])
        assert len(starts) == len(video["scores"]) >= 5
        assert np.all(starts % 5 == 0) and np.all(starts + 5 <= num_frames)
        np.testing.assert_array_equal(video["ends"], starts + 5)
        assert set(video["scores"]) <= {0.0, 1.0}
        assert set(video["segment_labels"]) <= vocabulary & set(video["labels"])
        np.testing.assert_array_equal(video["labels"], np.unique(video["labels"]))
    scores = np.concatenate([video["scores"] for video in segment_validate])
    assert 0.4 < scores.mean() < 0.8
    assert any(len(set(v["starts"])) < len(v["starts"]) for v in segment_validate)
    assert any(len(v["frames"]) % 5 for v in segment_validate)


def test_segment_vocabulary_is_segment_label_ids_below_num_classes():
    assert len(sample_writer.segment_vocabulary(3862)) == 1000
    small = sample_writer.segment_vocabulary(50)
    assert 0 < len(small) < 50 and small.max() < 50
    with pytest.raises(UserError, match="too small for the segment format"):
        sample_writer.segment_vocabulary(3)


def test_positive_segments_show_the_object_and_negatives_the_context(segment_validate):
    # Along o - x positives and negatives separate; along the prototype p, which is all
    # that a model trained on video-level labels learns of the class, they do not.
    prototypes = sample_writer.class_prototypes(np.random.default_rng(0), 3862)
    objects, contexts = sample_writer.object_and_context_directions(0, prototypes)
    along_signal, along_prototype, positive = [], [], []
    for video in segment_validate:
        for label, start, score in zip(video["segment_labels"], video["starts"], video["scores"]):
            segment = video["frames"][start : start + 5].mean(axis=0)
            signal = objects[label] - contexts[label]
            along_signal.append(segment @ signal / np.linalg.norm(signal))
            along_prototype.append(segment @ prototypes[label] / np.linalg.norm(prototypes[label]))
            positive.append(score == 1.0)
    along_signal, along_prototype = np.array(along_signal), np.array(along_prototype)
    positive = np.array(positive)
    signal_gap = along_signal[positive].mean() - along_signal[~positive].mean()
    prototype_gap = along_prototype[positive].mean() - along_prototype[~positive].mean()
    assert along_signal[positive].min() > along_signal[~positive].max()
    assert abs(prototype_gap) < 0.1 * signal_gap


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
        "--num_validate_videos=10",
        "--num_test_videos=0",
        "--num_shards=1",
        "--mean_frames=5",
        "--num_classes=50",
    )
    first = make_sample_data(str(tmp_path / "a"), "--seed=7", *args)
    # The same settings in this process (it saves two TensorFlow start-ups).
    settings = dict(
        num_train_videos=50,
        num_validate_videos=10,
        num_test_videos=0,
        num_shards=1,
        mean_frames=5,
        num_classes=50,
    )
    again, other = str(tmp_path / "b"), str(tmp_path / "c")
    sample_writer.main(sample_writer.SampleDataConfig(output_dir=again, seed=7, **settings))
    sample_writer.main(sample_writer.SampleDataConfig(output_dir=other, seed=8, **settings))
    for path in (
        "video/train0000.tfrecord",
        "frame/train0000.tfrecord",
        "segment/validate0000.tfrecord",
    ):
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


def test_segment_format_alone_writes_the_same_segment_files(tmp_path):
    def segment_files(output_dir, formats):
        sample_writer.main(
            sample_writer.SampleDataConfig(
                output_dir=str(output_dir),
                num_classes=50,
                num_train_videos=20,
                num_validate_videos=4,
                num_test_videos=3,
                num_shards=1,
                mean_frames=5,
                formats=formats,
            )
        )
        return [
            open(output_dir / "segment" / f"{split}0000.tfrecord", "rb").read()
            for split in ("validate", "test")
        ]

    alone = segment_files(tmp_path / "alone", ["segment"])
    assert os.listdir(tmp_path / "alone") == ["segment"]
    assert alone == segment_files(tmp_path / "all", ["video", "frame", "segment"])
