"""Bad input to the readers: one line that names the file or flag, and exit status 1."""

import shutil

import pytest
import tensorflow as tf
from conftest import one_error_line, run_script

import readers
from errors import UserError

VIDEO_FLAGS = ("--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128")
FRAME_FLAGS = ("--frame_features", "--feature_names=rgb,audio", "--feature_sizes=1024,128")


def read_all(reader, pattern):
    """Reads every batch, turning a TF error into the reader's one-line UserError."""
    with reader.errors_explained(pattern):
        for _ in reader.get_dataset(pattern, batch_size=8):
            pass


def video_example(labels=(1, 2), rgb_size=1024, audio=True) -> bytes:
    feature = {
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"vid"])),
        "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=list(labels))),
        "mean_rgb": tf.train.Feature(float_list=tf.train.FloatList(value=[0.1] * rgb_size)),
    }
    if audio:
        feature["mean_audio"] = tf.train.Feature(float_list=tf.train.FloatList(value=[0.1] * 128))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_file_with(tmp_path, sample_data, bad_record: bytes) -> tuple[str, int]:
    """Returns (path, index of the bad record) of a good shard with a bad record appended."""
    good = f"{sample_data}/video/validate0000.tfrecord"
    path = str(tmp_path / "mixed.tfrecord")
    index = 0
    with tf.io.TFRecordWriter(path) as writer:
        for record in tf.data.TFRecordDataset(good):
            writer.write(record.numpy())
            index += 1
        writer.write(bad_record)
    return path, index


def assert_one_line_error(result, *expected_parts):
    line = one_error_line(result)
    for part in expected_parts:
        assert part in line, line


def test_pattern_matching_no_file_is_one_line_naming_the_pattern(tmp_path):
    result = run_script(
        "describe_data.py", f"--data_pattern={tmp_path}/nothing*.tfrecord", check=False
    )
    assert_one_line_error(result, "nothing*.tfrecord", "No file matches")


def test_file_that_is_not_a_tfrecord_names_the_file(tmp_path):
    path = tmp_path / "notes.tfrecord"
    path.write_text("this is not a TFRecord file\n" * 100)
    result = run_script("describe_data.py", f"--data_pattern={path}", *VIDEO_FLAGS, check=False)
    assert_one_line_error(result, str(path), "not a valid TFRecord file")


def test_truncated_file_names_the_file(tmp_path, sample_data):
    data = open(f"{sample_data}/video/validate0000.tfrecord", "rb").read()
    path = tmp_path / "truncated.tfrecord"
    # Cut inside the last record's payload. (A cut inside a 12-byte record header is read by
    # TensorFlow's record reader as a clean end of file; see the README.)
    path.write_bytes(data[:-100])
    with pytest.raises(UserError, match=f"{path}: not a valid TFRecord file.*truncated"):
        read_all(readers.YT8MAggregatedFeatureReader(), str(path))


def test_crc_error_names_the_file(tmp_path, sample_data):
    data = bytearray(open(f"{sample_data}/video/validate0000.tfrecord", "rb").read())
    data[len(data) // 2] ^= 0xFF  # Flip bits inside some record's payload.
    path = tmp_path / "crc.tfrecord"
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=f"{path}: not a valid TFRecord file"):
        read_all(readers.YT8MAggregatedFeatureReader(), str(path))


def test_missing_feature_names_the_feature_and_file(tmp_path, sample_data):
    path, index = write_file_with(tmp_path, sample_data, video_example(audio=False))
    with pytest.raises(UserError, match=f"{path}: record {index}: missing feature 'mean_audio'"):
        read_all(readers.YT8MAggregatedFeatureReader(), path)


def test_feature_of_the_wrong_length_names_the_feature(tmp_path, sample_data):
    path, index = write_file_with(tmp_path, sample_data, video_example(rgb_size=1000))
    with pytest.raises(
        UserError, match=f"record {index}: feature 'mean_rgb' has 1000 floats, expected 1024"
    ):
        read_all(readers.YT8MAggregatedFeatureReader(), path)


def test_label_outside_the_vocabulary_names_the_label(tmp_path, sample_data):
    path, index = write_file_with(tmp_path, sample_data, video_example(labels=(5, 3862)))
    with pytest.raises(UserError, match=rf"record {index}: label id 3862 is outside \[0, 3862\)"):
        read_all(readers.YT8MAggregatedFeatureReader(), path)


def test_negative_label_is_rejected(tmp_path, sample_data):
    path, _ = write_file_with(tmp_path, sample_data, video_example(labels=(-1,)))
    with pytest.raises(UserError, match="label id -1 is outside"):
        read_all(readers.YT8MAggregatedFeatureReader(), path)


def test_frame_of_the_wrong_size_via_the_command_line(sample_data):
    result = run_script(
        "describe_data.py",
        f"--data_pattern={sample_data}/frame/test0001.tfrecord",
        "--frame_features",
        "--feature_names=rgb,audio",
        "--feature_sizes=1024,100",
        check=False,
    )
    assert_one_line_error(result, "test0001.tfrecord", "record 0", "'audio'", "expected 100")


def test_missing_frame_feature_via_the_command_line(sample_data):
    result = run_script(
        "describe_data.py",
        f"--data_pattern={sample_data}/frame/test0001.tfrecord",
        "--frame_features",
        "--feature_names=rgb,sound",
        "--feature_sizes=1024,128",
        check=False,
    )
    assert_one_line_error(result, "test0001.tfrecord", "missing feature list 'sound'")


def test_label_outside_a_smaller_vocabulary_via_the_command_line(sample_data):
    result = run_script(
        "describe_data.py",
        f"--data_pattern={sample_data}/video/test*.tfrecord",
        *VIDEO_FLAGS,
        "--num_classes=50",
        check=False,
    )
    assert_one_line_error(result, "test0000.tfrecord", "is outside [0, 50)")


def test_feature_names_and_sizes_of_different_lengths_name_both_flags(sample_data):
    result = run_script(
        "describe_data.py",
        f"--data_pattern={sample_data}/video/test*.tfrecord",
        "--feature_names=mean_rgb,mean_audio",
        "--feature_sizes=1024",
        check=False,
    )
    assert_one_line_error(result, "--feature_names", "--feature_sizes")


def test_good_files_do_not_produce_an_explanation(sample_data):
    reader = readers.YT8MAggregatedFeatureReader()
    error = tf.errors.InvalidArgumentError(None, None, "unrelated")
    assert reader.explain_error(error, f"{sample_data}/video/test*.tfrecord") is None


def test_copy_of_good_data_reads_cleanly(tmp_path, sample_data):
    shutil.copy(f"{sample_data}/video/test0000.tfrecord", tmp_path / "copy.tfrecord")
    result = run_script(
        "describe_data.py", f"--data_pattern={tmp_path}/copy.tfrecord", *VIDEO_FLAGS
    )
    assert "34 videos in 1 files" in result.stdout


def test_video_level_files_for_a_frame_level_reader_name_the_expected_format(sample_data):
    pattern = f"{sample_data}/video/test0000.tfrecord"
    with pytest.raises(
        UserError,
        match="record 0: a video-level tf.train.Example, but "
        "frame-level tf.train.SequenceExample records were expected",
    ):
        read_all(readers.YT8MFrameFeatureReader(), pattern)


def test_record_errors_name_the_setting_in_python_and_the_flag_on_the_command_line(sample_data):
    pattern = f"{sample_data}/frame/test0001.tfrecord"
    reader = readers.YT8MFrameFeatureReader(feature_sizes=[1024, 100])
    with pytest.raises(UserError) as error:
        read_all(reader, pattern)
    assert str(error.value).endswith("expected 100 (feature_sizes)")
    result = run_script(
        "describe_data.py",
        f"--data_pattern={pattern}",
        "--frame_features",
        "--feature_names=rgb,audio",
        "--feature_sizes=1024,100",
        check=False,
    )
    assert one_error_line(result).endswith("expected 100 (--feature_sizes)")
