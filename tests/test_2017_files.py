"""The 2017 files (video id under `video_id`) through every script, as a user runs them."""

import pandas as pd
import pytest
from conftest import make_sample_data, one_error_line, run_script

VIDEO_FLAGS = ("--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128")


@pytest.fixture(scope="module")
def data_2017(tmp_path_factory) -> str:
    return make_sample_data(
        str(tmp_path_factory.mktemp("data_2017")),
        "--num_train_videos=64",
        "--num_validate_videos=32",
        "--num_test_videos=32",
        "--num_shards=2",
        "--formats=video",
        "--id_key=video_id",
    )


def test_describe_data_reads_2017_files_with_id_feature(data_2017):
    pattern = f"{data_2017}/video/test*.tfrecord"
    without = run_script("describe_data.py", f"--data_pattern={pattern}", check=False)
    assert "missing the id feature 'id'" in one_error_line(without)
    described = run_script("describe_data.py", f"--data_pattern={pattern}", "--id_feature=video_id")
    assert "32 videos in 2 files" in described.stdout


def test_train_eval_and_inference_read_2017_files(data_2017, tmp_path):
    run_script(
        "train.py",
        f"--train_data_pattern={data_2017}/video/train*.tfrecord",
        f"--train_dir={tmp_path}",
        *VIDEO_FLAGS,
        "--id_feature=video_id",
        "--batch_size=16",
        "--max_steps=4",
    )
    evaluated = run_script(
        "eval.py",
        f"--eval_data_pattern={data_2017}/video/validate*.tfrecord",
        f"--train_dir={tmp_path}",
        "--run_once",
    )
    assert "Total: examples_processed: 32" in evaluated.stderr
    run_script(
        "inference.py",
        f"--train_dir={tmp_path}",
        f"--input_data_pattern={data_2017}/video/test*.tfrecord",
        f"--output_file={tmp_path}/predictions.csv",
    )
    table = pd.read_csv(tmp_path / "predictions.csv", dtype=str, keep_default_na=False)
    assert len(table) == 32 and table["VideoId"].str.len().min() > 0
    scored = run_script(
        "score_predictions.py",
        f"--predictions_file={tmp_path}/predictions.csv",
        f"--data_pattern={data_2017}/video/test*.tfrecord",
        "--id_feature=video_id",
    )
    assert "on 32 videos" in scored.stdout
