"""readers.py: what is read back equals what was written, in the documented shapes."""

import collections
import glob

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_sample_data

import features
import readers

VIDEO_FEATURES = dict(feature_names=["mean_rgb", "mean_audio"], feature_sizes=[1024, 128])
FRAME_FEATURES = dict(feature_names=["rgb", "audio"], feature_sizes=[1024, 128])


def all_batches(dataset) -> dict[str, np.ndarray]:
    """Concatenates every batch of a dataset into one array per key."""
    batches = [{key: value.numpy() for key, value in batch.items()} for batch in dataset]
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def written_records(pattern: str) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(sorted(glob.glob(pattern)))]


def frames_of(sequence_example, name) -> np.ndarray:
    features = sequence_example.feature_lists.feature_list[name].feature
    return np.stack([np.frombuffer(f.bytes_list.value[0], np.uint8) for f in features])


def test_video_reader_returns_the_written_values(sample_data):
    pattern = f"{sample_data}/video/validate*.tfrecord"
    got = all_batches(
        readers.YT8MAggregatedFeatureReader(**VIDEO_FEATURES).get_dataset(pattern, batch_size=32)
    )
    for row, record in enumerate(written_records(pattern)):
        feature = tf.train.Example.FromString(record).features.feature
        assert got["video_ids"][row] == feature["id"].bytes_list.value[0]
        expected = np.concatenate(
            [feature["mean_rgb"].float_list.value, feature["mean_audio"].float_list.value]
        ).astype(np.float32)
        np.testing.assert_array_equal(got["video_matrix"][row], expected)
        assert set(np.flatnonzero(got["labels"][row])) == set(feature["labels"].int64_list.value)


def test_video_reader_shapes_and_dtypes(sample_data):
    batch = next(
        iter(
            readers.YT8MAggregatedFeatureReader(**VIDEO_FEATURES).get_dataset(
                f"{sample_data}/video/train*.tfrecord", batch_size=16
            )
        )
    )
    assert batch["video_ids"].dtype == tf.string and batch["video_ids"].shape == (16,)
    assert batch["video_matrix"].dtype == tf.float32 and batch["video_matrix"].shape == (16, 1152)
    assert batch["labels"].dtype == tf.float32 and batch["labels"].shape == (16, 3862)
    assert set(np.unique(batch["labels"].numpy())) <= {0.0, 1.0}
    assert batch["num_frames"].dtype == tf.int32
    np.testing.assert_array_equal(batch["num_frames"].numpy(), np.ones(16))


def test_frame_reader_dequantizes_exactly_and_pads_with_zeros(sample_data):
    pattern = f"{sample_data}/frame/validate*.tfrecord"
    got = all_batches(
        readers.YT8MFrameFeatureReader(**FRAME_FEATURES).get_dataset(pattern, batch_size=16)
    )
    assert got["video_matrix"].dtype == np.float32
    assert got["video_matrix"].shape == (100, 300, 1152)
    for row, record in enumerate(written_records(pattern)):
        example = tf.train.SequenceExample.FromString(record)
        quantized = np.concatenate([frames_of(example, "rgb"), frames_of(example, "audio")], 1)
        num_frames = min(len(quantized), 300)
        # The original's float32 arithmetic: q * (4/255) + (4/512 - 2), the /512 kept.
        expected = quantized[:num_frames].astype(np.float32) * np.float32(4.0 / 255.0) + np.float32(
            4.0 / 512.0 - 2.0
        )
        assert got["num_frames"][row] == num_frames
        np.testing.assert_array_equal(got["video_matrix"][row, :num_frames], expected)
        assert np.all(got["video_matrix"][row, num_frames:] == 0.0)


def test_frame_reader_mean_matches_video_level_mean_within_quantization(sample_data):
    frame = all_batches(
        readers.YT8MFrameFeatureReader(**FRAME_FEATURES).get_dataset(
            f"{sample_data}/frame/test*.tfrecord", batch_size=50
        )
    )
    video = all_batches(
        readers.YT8MAggregatedFeatureReader(**VIDEO_FEATURES).get_dataset(
            f"{sample_data}/video/test*.tfrecord", batch_size=50
        )
    )
    np.testing.assert_array_equal(frame["video_ids"], video["video_ids"])
    short = frame["num_frames"] < 300  # Longer videos are truncated by the frame reader.
    means = frame["video_matrix"].sum(axis=1) / frame["num_frames"][:, None]
    np.testing.assert_allclose(means[short], video["video_matrix"][short], atol=4.0 / 255.0)


def test_num_frames_is_capped_at_max_frames(sample_data):
    reader = readers.YT8MFrameFeatureReader(max_frames=10, **FRAME_FEATURES)
    got = all_batches(reader.get_dataset(f"{sample_data}/frame/train*.tfrecord", batch_size=64))
    assert got["video_matrix"].shape[1:] == (10, 1152)
    assert got["num_frames"].max() == 10
    assert got["num_frames"].min() < 5


def test_eval_mode_reads_every_video_once_in_file_order(sample_data):
    pattern = f"{sample_data}/video/train*.tfrecord"
    got = all_batches(
        readers.YT8MAggregatedFeatureReader(**VIDEO_FEATURES).get_dataset(pattern, batch_size=64)
    )
    written = [
        tf.train.Example.FromString(r).features.feature["id"].bytes_list.value[0]
        for r in written_records(pattern)
    ]
    assert len(written) == 300
    assert list(got["video_ids"]) == written


def test_training_mode_reads_each_video_once_per_epoch_and_keeps_the_last_batch(sample_data):
    reader = readers.YT8MFrameFeatureReader(**FRAME_FEATURES)
    dataset = reader.get_dataset(
        f"{sample_data}/frame/validate*.tfrecord",
        batch_size=64,
        training=True,
        num_epochs=2,
        num_readers=2,
    )
    sizes, counts = [], collections.Counter()
    for batch in dataset:
        sizes.append(int(batch["video_ids"].shape[0]))
        counts.update(batch["video_ids"].numpy().tolist())
    # The partial batch is kept; batches are parsed in parallel, so it may not come last.
    assert sorted(sizes) == [200 - 64 * 3, 64, 64, 64]
    assert set(counts.values()) == {2} and len(counts) == 100


def test_training_mode_shuffles_records(sample_data):
    reader = readers.YT8MAggregatedFeatureReader(**VIDEO_FEATURES)
    pattern = f"{sample_data}/video/train*.tfrecord"
    in_order = all_batches(reader.get_dataset(pattern, 300))["video_ids"]
    shuffled = all_batches(reader.get_dataset(pattern, 64, training=True))["video_ids"]
    assert sorted(shuffled) == sorted(in_order)
    assert list(shuffled) != list(in_order)


def test_workers_sharding_the_training_pipeline_read_whole_distinct_files(sample_data):
    # MultiWorkerMirroredStrategy shards a dataset with tf.data's auto-shard rewrite
    # (AUTO policy: by file where it can find the files, else by record, which on a
    # shuffled pipeline would let workers read the same records). Applied here directly,
    # for two workers over the three training files, with each worker's own file order.
    from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

    reader = readers.YT8MAggregatedFeatureReader(**VIDEO_FEATURES)
    pattern = f"{sample_data}/video/train*.tfrecord"
    file_of = {
        video_id: path
        for path in sorted(glob.glob(pattern))
        for video_id in all_batches(reader.get_dataset(path, 100))["video_ids"]
    }
    for _ in range(3):
        read = [
            all_batches(
                _AutoShardDataset(reader.get_dataset(pattern, 32, training=True), 2, worker)
            )["video_ids"]
            for worker in range(2)
        ]
        files = [{file_of[video_id] for video_id in ids} for ids in read]
        assert files[0].isdisjoint(files[1]) and len(files[0] | files[1]) == 3
        assert sorted([*read[0], *read[1]]) == sorted(file_of)


@pytest.mark.parametrize(
    "names,sizes,columns",
    [
        (["rgb"], [1024], slice(0, 1024)),
        (["audio"], [128], slice(1024, 1152)),
        (["audio", "rgb"], [128, 1024], np.r_[1024:1152, 0:1024]),
    ],
)
def test_frame_feature_subsets_in_any_order(sample_data, names, sizes, columns):
    pattern = f"{sample_data}/frame/validate0000.tfrecord"
    full = next(iter(readers.YT8MFrameFeatureReader(**FRAME_FEATURES).get_dataset(pattern, 8)))
    subset = next(
        iter(
            readers.YT8MFrameFeatureReader(feature_names=names, feature_sizes=sizes).get_dataset(
                pattern, 8
            )
        )
    )
    np.testing.assert_array_equal(
        subset["video_matrix"].numpy(), full["video_matrix"].numpy()[:, :, columns]
    )


def test_video_feature_subset_audio_only(sample_data):
    pattern = f"{sample_data}/video/validate0000.tfrecord"
    full = next(iter(readers.YT8MAggregatedFeatureReader(**VIDEO_FEATURES).get_dataset(pattern, 8)))
    audio = next(
        iter(
            readers.YT8MAggregatedFeatureReader(
                feature_names=["mean_audio"], feature_sizes=[128]
            ).get_dataset(pattern, 8)
        )
    )
    np.testing.assert_array_equal(
        audio["video_matrix"].numpy(), full["video_matrix"].numpy()[:, 1024:]
    )


def test_2017_id_key_video_id_can_be_selected(tmp_path):
    data = make_sample_data(
        str(tmp_path),
        "--id_key=video_id",
        "--num_train_videos=10",
        "--num_validate_videos=0",
        "--num_test_videos=0",
        "--num_shards=1",
        "--mean_frames=5",
    )
    video = next(
        iter(
            readers.YT8MAggregatedFeatureReader(id_feature="video_id").get_dataset(
                f"{data}/video/train*.tfrecord", 10
            )
        )
    )
    frame = next(
        iter(
            readers.YT8MFrameFeatureReader(id_feature="video_id").get_dataset(
                f"{data}/frame/train*.tfrecord", 10
            )
        )
    )
    assert list(video["video_ids"].numpy()) == list(frame["video_ids"].numpy())
    assert video["video_ids"].numpy()[0] == b"t000000"


def test_create_reader_parses_the_feature_flags():
    reader = readers.create_reader(True, " rgb , audio", "1024,128")
    assert isinstance(reader, readers.YT8MFrameFeatureReader)
    assert reader.feature_names == ["rgb", "audio"] and reader.feature_sizes == [1024, 128]
    assert isinstance(
        readers.create_reader(False, "mean_rgb", "1024"), readers.YT8MAggregatedFeatureReader
    )


def test_dequantize_uses_the_original_512_constant():
    assert features.dequantize(0.0) == pytest.approx(-2.0 + 4.0 / 512.0)
    assert features.dequantize(255.0) == pytest.approx(2.0 + 4.0 / 512.0)


def test_quantized_frames_dequantize_in_the_model_step_to_the_same_values(sample_data):
    pattern = f"{sample_data}/frame/validate0001.tfrecord"
    floats = next(iter(readers.YT8MFrameFeatureReader(**FRAME_FEATURES).get_dataset(pattern, 40)))
    quantized = next(
        iter(
            readers.YT8MFrameFeatureReader(quantized_frames=True, **FRAME_FEATURES).get_dataset(
                pattern, 40
            )
        )
    )
    assert quantized["video_matrix"].dtype == tf.uint8
    np.testing.assert_array_equal(quantized["num_frames"], floats["num_frames"])
    dequantized = features.dequantize_frames([quantized["video_matrix"]], [quantized["num_frames"]])
    np.testing.assert_array_equal(dequantized.numpy(), floats["video_matrix"].numpy())
    np.testing.assert_allclose(
        features.dequantized_and_normalized(
            quantized["video_matrix"], quantized["num_frames"]
        ).numpy(),
        tf.nn.l2_normalize(floats["video_matrix"], -1).numpy(),
        rtol=1e-6,
        atol=1e-7,
    )
