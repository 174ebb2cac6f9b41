"""Frame-level models: their maths, the sampling helpers, and train → eval → inference."""

import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import checkpoint_predictions, one_error_line, run_script

import eval_util
import export_model
import features
import frame_level_models
import model_util
import models
import trained_model

FRAME_FLAGS = ("--frame_features", "--feature_names=rgb,audio", "--feature_sizes=1024,128")
# Small sizes for a short run, and the GAP each reaches on validate after 120 steps at
# least (random scores reach about 1e-5; the LSTM reached 0.014-0.04 in trial runs).
SMALL = {
    "FrameLevelLogisticModel": ((), 0.05),
    "DbofModel": (
        (
            "--dbof_cluster_size=256",
            "--dbof_hidden_size=256",
            "--iterations=10",
            "--dbof_activation=relu6",
            "--base_learning_rate=0.001",
        ),
        0.01,
    ),
    "LstmModel": (("--lstm_cells=64", "--lstm_layers=1", "--base_learning_rate=0.01"), 0.003),
}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_frame_level_logistic_is_numpy_average_then_logistic():
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(2, 6, 4)).astype(np.float32)
    num_frames = np.array([6, 3], np.int32)
    frames[1, 3:] = 0.0  # Padding.
    model = frame_level_models.FrameLevelLogisticModel(vocab_size=3)
    model(frames, num_frames=num_frames)
    weights = rng.normal(size=(4, 3)).astype(np.float32)
    bias = rng.normal(size=(3,)).astype(np.float32)
    model.logistic.kernel.assign(weights)
    model.logistic.bias.assign(bias)
    average = np.stack([frames[0].mean(axis=0), frames[1, :3].mean(axis=0)])
    np.testing.assert_allclose(
        model(frames, num_frames=num_frames)["predictions"].numpy(),
        sigmoid(average @ weights + bias),
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    "name,hyperparameters",
    [
        ("FrameLevelLogisticModel", {}),
        ("LstmModel", {"lstm_cells": 8, "lstm_layers": 2, "moe_num_mixtures": 2}),
    ],
)
def test_padding_does_not_change_the_predictions(name, hyperparameters):
    rng = np.random.default_rng(1)
    video = rng.normal(size=(1, 7, 5)).astype(np.float32)
    model = models.create_model(name, 4, hyperparameters)
    num_frames = tf.constant([7])
    short = model(np.pad(video, [[0, 0], [0, 3], [0, 0]]), num_frames=num_frames)
    long = model(np.pad(video, [[0, 0], [0, 40], [0, 0]]), num_frames=num_frames)
    np.testing.assert_allclose(
        short["predictions"].numpy(), long["predictions"].numpy(), rtol=1e-5, atol=1e-6
    )


def numbered_frames(num_frames, max_frames=12):
    """[videos, max_frames, 1] whose real frame t holds t + 1 and padding holds 0."""
    frames = np.zeros((len(num_frames), max_frames, 1), np.float32)
    for video, count in enumerate(num_frames):
        frames[video, :count, 0] = np.arange(1, count + 1)
    return frames


@pytest.mark.parametrize(
    "sampler", [model_util.SampleRandomFrames, model_util.SampleRandomSequence]
)
def test_sampling_returns_only_real_frames_also_for_short_videos(sampler):
    num_frames = np.array([12, 5, 1, 30 // 3], np.int32)
    tf.random.set_seed(0)
    for _ in range(20):
        sampled = sampler(numbered_frames(num_frames), num_frames[:, None], 8).numpy()[:, :, 0]
        assert sampled.shape == (4, 8)
        for video, count in enumerate(num_frames):
            assert np.all((sampled[video] >= 1) & (sampled[video] <= count)), sampled[video]


def test_random_sequence_is_contiguous_and_repeats_the_last_frame_of_short_videos():
    num_frames = np.array([12, 3], np.int32)
    sampled = model_util.SampleRandomSequence(
        numbered_frames(num_frames), num_frames[:, None], 6
    ).numpy()[:, :, 0]
    assert np.all(np.diff(sampled[0]) == 1)
    np.testing.assert_array_equal(sampled[1], [1, 2, 3, 3, 3, 3])


def test_frame_pooling_methods():
    frames = tf.constant(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    np.testing.assert_array_equal(model_util.FramePooling(frames, "max"), frames.numpy().max(1))
    np.testing.assert_allclose(model_util.FramePooling(frames, "average"), frames.numpy().mean(1))
    np.testing.assert_array_equal(
        model_util.FramePooling(frames, "none"), frames.numpy().reshape(6, 4)
    )
    with pytest.raises(ValueError, match="Unrecognized pooling method: attention"):
        model_util.FramePooling(frames, "attention")


@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_learns_and_the_frame_level_job_runs_from_the_command_line(
    name, sample_data, tmp_path
):
    train_dir = tmp_path / "model"
    flags, min_gap = SMALL[name]
    training = run_script(
        "train.py",
        *FRAME_FLAGS,
        f"--model={name}",
        *flags,
        f"--train_data_pattern={sample_data}/frame/train*.tfrecord",
        f"--train_dir={train_dir}",
        "--batch_size=32",
        "--max_steps=120",
        "--num_epochs=100",
    )
    _, predictions, labels = checkpoint_predictions(
        str(train_dir), f"{sample_data}/frame/validate*.tfrecord"
    )
    gap = eval_util.calculate_gap(predictions, labels)
    random_gap = eval_util.calculate_gap(np.random.default_rng(0).random(labels.shape), labels)
    assert gap > min_gap and gap > 20 * random_gap, (gap, random_gap)
    losses = [
        float(line.split("Loss: ")[1].split()[0])
        for line in training.stderr.splitlines()
        if "training step" in line
    ]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:3])
    if name == "FrameLevelLogisticModel":
        # The command-line path of eval.py and inference.py for a frame-level model (that
        # they rebuild every model from model_flags.json alone is checked in process by
        # tests/test_segments.py, for DBoF and LSTM too).
        evaluate_and_predict_from_the_command_line(sample_data, train_dir, tmp_path)


def evaluate_and_predict_from_the_command_line(sample_data, train_dir, tmp_path):
    """Runs eval.py and inference.py on a trained frame-level model, then wrong input."""
    result = run_script(
        "eval.py",
        f"--eval_data_pattern={sample_data}/frame/validate*.tfrecord",
        f"--train_dir={train_dir}",
        "--run_once",
        "--batch_size=50",
    )
    assert "epoch/eval number 120 | Avg_Hit@1:" in result.stderr
    output = tmp_path / "predictions.csv"
    run_script(
        "inference.py",
        f"--train_dir={train_dir}",
        f"--output_file={output}",
        f"--input_data_pattern={sample_data}/frame/test*.tfrecord",
    )
    table = pd.read_csv(output, keep_default_na=False)
    assert len(table) == 100
    assert all(len(pairs.split()) == 40 for pairs in table["LabelConfidencePairs"])
    result = run_script(  # Video-level files for a frame-level model.
        "inference.py",
        f"--train_dir={train_dir}",
        f"--output_file={tmp_path / 'wrong.csv'}",
        f"--input_data_pattern={sample_data}/video/test0000.tfrecord",
        check=False,
    )
    line = one_error_line(result)
    assert "test0000.tfrecord: record 0: a video-level tf.train.Example, but frame-level" in line


def test_batch_norm_statistics_are_trained_saved_and_used_in_eval_and_export(sample_data, tmp_path):
    # A sequence of max_frames frames from each video is deterministic: every frame, with
    # the last one repeated; so inference-mode outputs can be compared exactly.
    run_script(
        "train.py",
        *FRAME_FLAGS,
        "--model=DbofModel",
        "--dbof_cluster_size=64",
        "--dbof_hidden_size=32",
        "--iterations=300",
        "--sample_random_frames=false",
        f"--train_data_pattern={sample_data}/frame/train*.tfrecord",
        f"--train_dir={tmp_path}",
        "--batch_size=32",
        "--max_steps=20",
    )
    model, reader, _ = trained_model.restored_model(str(tmp_path))
    moving_means = [w.numpy() for w in model.non_trainable_weights if "moving_mean" in w.path]
    # Momentum 0.999: after 20 steps the statistics have moved ~2% of the way, but moved.
    assert len(moving_means) == 3 and all(np.abs(m).max() > 0 for m in moving_means)

    pattern = f"{sample_data}/frame/test0000.tfrecord"
    batch = next(iter(reader.get_dataset(pattern, 40)))
    model_input = features.dequantized_and_normalized(batch["video_matrix"], batch["num_frames"])
    inference = model(model_input, num_frames=batch["num_frames"])["predictions"].numpy()
    alone = model(model_input[:1], num_frames=batch["num_frames"][:1])["predictions"].numpy()
    np.testing.assert_allclose(alone[0], inference[0], rtol=1e-4)  # No batch statistics.

    export_model.export(model, reader, str(tmp_path / "exported"))
    served = export_model.load(str(tmp_path / "exported"))(
        example_bytes=tf.constant([r.numpy() for r in tf.data.TFRecordDataset(pattern).take(40)])
    )
    top = tf.nn.top_k(inference, 20)
    np.testing.assert_allclose(served["predictions"].numpy(), top.values.numpy(), rtol=1e-5)

    for weight in model.non_trainable_weights:  # Back to the initial statistics.
        weight.assign(
            np.zeros(weight.shape) if "moving_mean" in weight.path else np.ones(weight.shape)
        )
    untrained = model(model_input, num_frames=batch["num_frames"])["predictions"].numpy()
    # The statistics moved little, but more than the tolerance the exports were held to.
    assert np.abs(untrained - inference).max() > 10 * 1e-5 * np.abs(inference).max()


def test_unknown_video_level_classifier_is_a_one_line_error(sample_data, tmp_path):
    result = run_script(
        "train.py",
        *FRAME_FLAGS,
        "--model=DbofModel",
        "--video_level_classifier_model=Nope",
        f"--train_data_pattern={sample_data}/frame/train*.tfrecord",
        f"--train_dir={tmp_path}",
        check=False,
    )
    assert result.returncode == 1
    assert "ERROR: --video_level_classifier_model='Nope' is not known" in result.stderr
    assert not os.path.exists(tmp_path / "model.ckpt-1.index")
