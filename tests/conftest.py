"""Shared fixtures: sample data written by make_sample_data.py, run as a user runs it."""

import os
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

import cli
import eval_util
import models
import train
import trained_model
from errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Quiet TensorFlow's C++ start-up logging in the scripts the tests run.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def run_script(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs one of the project's scripts in a fresh Python process, as a user would."""
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, script), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    if check and result.returncode != 0:
        command = " ".join((script, *args))
        raise AssertionError(
            f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """Returns the one 'ERROR: ...' line of a script that failed with status 1."""
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def error_line(main, settings) -> str:
    """Returns the 'ERROR: ...' line the command line prints for main(settings)'s error.

    The same job in this process: it saves a TensorFlow start-up per error checked. Each
    script keeps at least one such check run as a user runs it (one_error_line).
    """
    with pytest.raises(UserError) as error:
        main(settings)
    return f"ERROR: {cli.one_line(error.value)}"


def summary_events(log_dir: str) -> event_accumulator.EventAccumulator:
    """Returns the TensorBoard events written to a directory, all scalars kept."""
    events = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.TENSORS: 0}
    )
    events.Reload()
    return events


def checkpoint_predictions(train_dir, data_pattern: str, batch_statistics: bool = False):
    """Returns (video ids, predictions, labels) of train_dir's latest checkpoint on the data.

    The model is rebuilt from model_flags.json and run in inference mode, as eval.py does,
    but here in plain eager code, so tests can check the scripts against it. With
    batch_statistics, in training mode instead: batch norm normalises each batch of 64 by
    its own statistics rather than by the moving averages.
    """
    model, reader, _ = trained_model.restored_model(str(train_dir))
    ids, predictions, labels = [], [], []
    for batch in reader.get_dataset(data_pattern, 64):
        outputs = models.forward(
            model, batch["video_matrix"], batch["num_frames"], training=batch_statistics
        )
        predictions.append(outputs["predictions"])
        labels.append(batch["labels"].numpy())
        ids += [video_id.decode() for video_id in batch["video_ids"].numpy()]
    return ids, np.concatenate(predictions), np.concatenate(labels)


def validate_gap(
    train_dir, sample_data, data_format: str = "video", batch_statistics: bool = False
) -> tuple[float, float]:
    """Returns (GAP of the checkpoint, GAP of random scores) on the validate split."""
    _, predictions, labels = checkpoint_predictions(
        str(train_dir), f"{sample_data}/{data_format}/validate*.tfrecord", batch_statistics
    )
    random_scores = np.random.default_rng(0).random(predictions.shape)
    return eval_util.calculate_gap(predictions, labels), eval_util.calculate_gap(
        random_scores, labels
    )


def frame_training(train_dir, data_pattern: str, model: str, hyperparameters: dict, **settings):
    """Returns the train.TrainConfig of a frame-level model on rgb and audio."""
    return train.TrainConfig(
        train_dir=str(train_dir),
        train_data_pattern=data_pattern,
        frame_features=True,
        feature_names="rgb,audio",
        feature_sizes="1024,128",
        model=model,
        model_hyperparameters={**models.default_hyperparameters(), **hyperparameters},
        **settings,
    )


def make_sample_data(output_dir: str, *args: str) -> str:
    """Writes sample data with make_sample_data.py and returns its directory."""
    run_script("make_sample_data.py", f"--output_dir={output_dir}", *args)
    return output_dir


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> str:
    """Small data set in both formats: 300/100/100 videos, 3 shards per split."""
    return make_sample_data(
        str(tmp_path_factory.mktemp("sample_data")),
        "--num_train_videos=300",
        "--num_validate_videos=100",
        "--num_test_videos=100",
        "--num_shards=3",
        "--mean_frames=20",
    )


def assert_top_k(predictions: np.ndarray, classes, scores, k: int) -> None:
    """Asserts that (classes, scores) are a video's top k of predictions, in order.

    Each score is the model's own for its class, scores descend, and no other class
    scores higher. The served model is XLA-compiled, so classes whose scores differ by
    float rounding (~1e-7) may come in either order; exact index equality would be flaky.
    """
    classes, scores = np.asarray(classes), np.asarray(scores)
    assert len(set(classes.tolist())) == len(classes) == k
    np.testing.assert_allclose(scores, predictions[classes], rtol=1e-5)
    assert np.all(np.diff(scores) <= 1e-6)
    assert np.delete(predictions, classes).max() <= scores.min() + 1e-6
