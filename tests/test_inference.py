"""inference.py run as a user runs it: predictions.csv, the model .tgz, bad input."""

import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import (
    assert_top_k,
    checkpoint_predictions,
    error_line,
    one_error_line,
    run_script,
)

import inference

VIDEO_FLAGS = ("--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128")


@pytest.fixture(scope="module")
def trained(sample_data, tmp_path_factory):
    """A LogisticModel trained for 30 steps, its inference model exported."""
    train_dir = str(tmp_path_factory.mktemp("inference_model"))
    run_script(
        "train.py",
        f"--train_data_pattern={sample_data}/video/train*.tfrecord",
        f"--train_dir={train_dir}",
        *VIDEO_FLAGS,
        "--batch_size=32",
        "--max_steps=30",
    )
    run_script(
        "export_model.py", f"--train_dir={train_dir}", f"--output_dir={train_dir}/inference_model"
    )
    return train_dir


def predict(train_dir, data_pattern, output_file, *extra, check=True):
    return run_script(
        "inference.py",
        f"--train_dir={train_dir}",
        f"--input_data_pattern={data_pattern}",
        f"--output_file={output_file}",
        *extra,
        check=check,
    )


def read_predictions(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"VideoId": str}, keep_default_na=False)


def parse_pairs(text: str):
    values = text.split()
    return np.array(values[0::2], int), np.array(values[1::2], float)


def test_predictions_csv_holds_each_videos_top_20_in_order(trained, sample_data, tmp_path):
    pattern = f"{sample_data}/video/test*.tfrecord"
    output = tmp_path / "predictions.csv"
    result = predict(trained, pattern, output)
    assert open(output).readline() == "VideoId,LabelConfidencePairs\n"
    table = read_predictions(output)
    ids, predictions, _ = checkpoint_predictions(trained, pattern)
    assert list(table["VideoId"]) == ids  # Every input video once, in input order.
    for row, pairs in enumerate(table["LabelConfidencePairs"]):
        classes, scores = parse_pairs(pairs)
        assert_top_k(predictions[row], classes, scores, k=20)  # To %g's 6 digits.
    assert "num examples processed: 100 elapsed seconds: " in result.stderr
    assert f"Done with inference. The output file was written to {output}" in result.stderr
    assert not [name for name in os.listdir(tmp_path) if ".tmp" in name]


def test_row_count_equals_records_over_several_shards(trained, sample_data, tmp_path):
    output = tmp_path / "all.csv"
    predict(trained, f"{sample_data}/video/*.tfrecord", output, "--batch_size=64")
    assert len(read_predictions(output)) == 500


def test_scores_use_percent_g_format(trained, sample_data, tmp_path):
    output = tmp_path / "p.csv"
    predict(trained, f"{sample_data}/video/test0000.tfrecord", output, "--top_k=5")
    for pairs in read_predictions(output)["LabelConfidencePairs"]:
        values = pairs.split()
        assert len(values) == 10
        assert all(score == f"{float(score):g}" for score in values[1::2])


def test_model_tgz_round_trip_gives_identical_predictions(trained, sample_data, tmp_path):
    pattern = f"{sample_data}/video/validate*.tfrecord"
    predict(trained, pattern, tmp_path / "direct.csv", f"--output_model_tgz={tmp_path}/model.tgz")
    result = run_script(
        "inference.py",
        f"--input_model_tgz={tmp_path}/model.tgz",
        f"--untar_model_dir={tmp_path}/untarred",
        f"--input_data_pattern={pattern}",
        f"--output_file={tmp_path}/tgz.csv",
    )
    assert result.returncode == 0
    assert open(tmp_path / "direct.csv").read() == open(tmp_path / "tgz.csv").read()
    assert os.path.exists(tmp_path / "untarred" / "model_flags.json")


def write_videos_with_ids(path, sample_data, ids):
    """Copies the first records of a shard with new video ids."""
    records = [
        r.numpy()
        for r in tf.data.TFRecordDataset(f"{sample_data}/video/test0000.tfrecord").take(len(ids))
    ]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record, video_id in zip(records, ids):
            example = tf.train.Example.FromString(record)
            example.features.feature["id"].bytes_list.value[0] = video_id.encode("utf-8")
            writer.write(example.SerializeToString())


def test_ids_with_commas_quotes_and_newlines_are_quoted_and_read_back(
    trained, sample_data, tmp_path
):
    ids = ["plain", "a,b", 'say "hi"', "two\nlines", "café"]
    write_videos_with_ids(tmp_path / "odd.tfrecord", sample_data, ids)
    predict(trained, tmp_path / "odd.tfrecord", tmp_path / "odd.csv")
    table = read_predictions(tmp_path / "odd.csv")
    assert list(table["VideoId"]) == ids
    assert all(len(pairs.split()) == 40 for pairs in table["LabelConfidencePairs"])


def predict_in_process(train_dir, data_pattern, output_file, **settings) -> str:
    """Returns the error line of inference.py's job run in this process."""
    config = inference.InferenceConfig(
        train_dir=str(train_dir),
        input_data_pattern=data_pattern,
        output_file=str(output_file),
        **settings,
    )
    return error_line(inference.main, config)


def test_missing_model_flags_tells_the_user_to_run_eval(sample_data, tmp_path):
    line = predict_in_process(tmp_path, f"{sample_data}/video/test*.tfrecord", tmp_path / "p.csv")
    assert line == (f"ERROR: Cannot find file {tmp_path}/model_flags.json. Did you run eval.py?")


def test_missing_inference_model_tells_the_user_to_run_eval(sample_data, tmp_path):
    (tmp_path / "model_flags.json").write_text(
        '{"model": "LogisticModel", "feature_sizes": "1024,128", "feature_names": '
        '"mean_rgb,mean_audio", "frame_features": false, "label_loss": "CrossEntropyLoss"}'
    )
    line = predict_in_process(tmp_path, f"{sample_data}/video/test*.tfrecord", tmp_path / "p.csv")
    assert line == (f"ERROR: Cannot find {tmp_path}/inference_model. Did you run eval.py?")


def test_output_directory_that_does_not_exist_is_named(trained, sample_data, tmp_path):
    line = predict_in_process(
        trained, f"{sample_data}/video/test*.tfrecord", tmp_path / "no_such_dir" / "p.csv"
    )
    assert f"directory '{tmp_path}/no_such_dir' does not exist" in line


def test_frame_level_files_for_a_video_level_model_name_the_expected_format(
    trained, sample_data, tmp_path
):
    result = predict(
        trained, f"{sample_data}/frame/test0000.tfrecord", tmp_path / "p.csv", check=False
    )
    line = one_error_line(result)
    assert "test0000.tfrecord: record 0: a frame-level tf.train.SequenceExample" in line
    assert not (tmp_path / "p.csv").exists()
    assert not [name for name in os.listdir(tmp_path) if ".tmp" in name]


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"input_model_tgz": "/tmp/x.tgz"}, "You cannot supply --train_dir if supplying"),
    ],
)
def test_contradictory_flags_are_one_line_errors(trained, sample_data, tmp_path, settings, message):
    line = predict_in_process(
        trained, f"{sample_data}/video/test*.tfrecord", tmp_path / "p.csv", **settings
    )
    assert message in line


def test_missing_input_pattern_is_the_original_message(trained, tmp_path):
    result = run_script(
        "inference.py", f"--train_dir={trained}", f"--output_file={tmp_path}/p.csv", check=False
    )
    assert one_error_line(result) == (
        "ERROR: 'input_data_pattern' was not specified. Unable to continue with inference."
    )
