"""The scripts' start: TensorFlow's start-up noise hidden unless TF_CPP_MIN_LOG_LEVEL is set."""

import os
import subprocess
import sys

import pytest
from conftest import REPO

import quiet_tensorflow


def missing_data_run(**environment) -> subprocess.CompletedProcess:
    """train.py on a pattern that matches nothing, with exactly `environment`'s log level."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), "--train_data_pattern=/no/such/*"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**env, **environment},
        timeout=300,
    )


def test_without_tf_cpp_min_log_level_the_start_up_noise_is_hidden():
    result = missing_data_run()
    assert result.returncode == 1
    assert "ERROR: Unable to find training files. data_pattern='/no/such/*'." in result.stderr
    noise = [line for line in result.stderr.splitlines() if quiet_tensorflow.is_noise(line)]
    assert noise == []
    # TensorFlow's own INFO lines go too (the level is 1); absl's lines of the script stay.
    assert "No GPUs found. Training on CPU." in result.stderr


def test_a_tf_cpp_min_log_level_of_the_users_own_is_left_alone():
    result = missing_data_run(TF_CPP_MIN_LOG_LEVEL="0")
    assert result.returncode == 1
    if not any(quiet_tensorflow.is_noise(line) for line in result.stderr.splitlines()):
        pytest.skip("this TensorFlow prints no start-up noise on this machine")
    assert "ERROR: Unable to find training files." in result.stderr
