"""train.py run as a user runs it: learning, checkpoints, summaries, resume, signals."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    REPO,
    error_line,
    one_error_line,
    run_script,
    summary_events,
    validate_gap,
)

import losses
import models
import readers
import train

VIDEO_FLAGS = ("--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128")


def train_flags(sample_data, train_dir, *extra):
    return (
        f"--train_data_pattern={sample_data}/video/train*.tfrecord",
        f"--train_dir={train_dir}",
        *VIDEO_FLAGS,
        *extra,
    )


def latest_step(train_dir) -> int:
    return int(tf.train.latest_checkpoint(str(train_dir)).rsplit("-", 1)[1])


def losses_logged(stderr: str) -> list[float]:
    return [
        float(line.split("Loss: ")[1].split()[0])
        for line in stderr.splitlines()
        if "training step" in line
    ]


@pytest.mark.parametrize(
    "model,steps,extra",
    [
        ("LogisticModel", 200, ()),
        # 100 steps take it to a loss of 0.15 of the first steps' and a GAP of 0.14.
        ("MoeModel", 100, ("--moe_num_mixtures=2",)),
    ],
)
def test_model_learns_loss_falls_and_validate_gap_rises(sample_data, tmp_path, model, steps, extra):
    result = run_script(
        "train.py",
        *train_flags(
            sample_data,
            tmp_path,
            f"--model={model}",
            "--batch_size=32",
            f"--max_steps={steps}",
            "--num_epochs=100",
            *extra,
        ),
    )
    logged = losses_logged(result.stderr)
    assert len(logged) == steps
    assert np.mean(logged[-20:]) < 0.5 * np.mean(logged[:5])
    gap, random_gap = validate_gap(tmp_path, sample_data)
    assert random_gap < 0.01
    assert gap > 0.1 and gap > 10 * random_gap, (gap, random_gap)


@pytest.fixture(scope="module")
def short_run(sample_data, tmp_path_factory):
    """A 30-step LogisticModel run: checkpoints at 10 and 30, metrics every 10 steps."""
    train_dir = tmp_path_factory.mktemp("short_run")
    result = run_script(
        "train.py",
        *train_flags(
            sample_data, train_dir, "--batch_size=16", "--max_steps=30", "--export_model_steps=1000"
        ),
    )
    return train_dir, result


def test_checkpoints_are_written_at_the_first_logged_step_and_the_end(short_run):
    train_dir, _ = short_run
    state = tf.train.get_checkpoint_state(str(train_dir))
    steps = sorted(int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths)
    assert steps == [10, 30]
    assert glob.glob(f"{train_dir}/model.ckpt-30.index")


def test_log_lines_have_the_original_format(short_run):
    _, result = short_run
    lines = [line.split("] ", 1)[1] for line in result.stderr.splitlines() if "] " in line]
    assert any(
        line.startswith("training step 10 | Loss: ")
        and "| Hit@1: " in line
        and " PERR: " in line
        and " GAP: " in line
        for line in lines
    )
    assert any(
        line.startswith("training step 11 | Loss: ") and "Examples/sec: " in line for line in lines
    )
    assert "Using batch size of 16 for training." in lines
    assert "Number of training files: 3." in lines
    assert "/job:master/task:0: Exited training loop." in lines


def test_summary_tags_are_read_back_from_the_event_files(short_run):
    train_dir, _ = short_run
    events = summary_events(train_dir)
    tags = set(events.Tags()["tensors"])
    for tag in (
        "model/Training_Hit@1",
        "model/Training_Perr",
        "model/Training_GAP",
        "global_step/Examples/Second",
        "learning_rate",
        "label_loss",
        "reg_loss",
        "model/input_raw",
    ):
        assert tag in tags, tag
    steps = [event.step for event in events.Tensors("model/Training_GAP")]
    assert steps == [10, 20, 30]
    learning_rate = tf.make_ndarray(events.Tensors("learning_rate")[0].tensor_proto)
    assert float(learning_rate) == pytest.approx(0.01)


def test_model_flags_json_records_the_original_keys_and_hyperparameters(short_run):
    train_dir, _ = short_run
    with open(os.path.join(train_dir, "model_flags.json")) as file:
        flags = json.load(file)
    assert flags["model"] == "LogisticModel"
    assert flags["feature_names"] == "mean_rgb,mean_audio"
    assert flags["feature_sizes"] == "1024,128"
    assert flags["frame_features"] is False
    assert flags["label_loss"] == "CrossEntropyLoss"
    assert flags["moe_num_mixtures"] == 2


def test_resume_continues_from_the_saved_global_step(sample_data, tmp_path):
    args = train_flags(sample_data, tmp_path, "--batch_size=16")
    run_script("train.py", *args, "--max_steps=12")
    assert latest_step(tmp_path) == 12
    result = run_script("train.py", *args, "--max_steps=20")
    assert f"Restoring from checkpoint {tmp_path}/model.ckpt-12" in result.stderr
    steps = [
        int(line.split("training step ")[1].split()[0])
        for line in result.stderr.splitlines()
        if "training step" in line
    ]
    assert steps == list(range(13, 21))
    assert latest_step(tmp_path) == 20


def test_resume_restores_weights_and_optimizer_state(sample_data, tmp_path):
    run_script("train.py", *train_flags(sample_data, tmp_path, "--batch_size=16", "--max_steps=5"))
    saved = tf.train.load_checkpoint(str(tmp_path / "model.ckpt-5"))
    config = train.TrainConfig(
        train_dir=str(tmp_path),
        feature_names="mean_rgb,mean_audio",
        feature_sizes="1024,128",
        batch_size=16,
    )
    reader = readers.create_reader(False, config.feature_names, config.feature_sizes)
    model = models.create_built_model(config.model, reader, config.model_hyperparameters)
    optimizer = train.create_optimizer(config, config.batch_size)
    optimizer.build(model.trainable_variables)
    train.restore_latest(tf.train.Checkpoint(model=model, optimizer=optimizer), config)
    assert int(optimizer.iterations.numpy()) == 5
    np.testing.assert_array_equal(
        model.logistic.kernel.numpy(),
        saved.get_tensor("model/logistic/_kernel/.ATTRIBUTES/VARIABLE_VALUE"),
    )
    slots = [v.numpy() for v in optimizer.variables if v.shape == (1152, 3862)]
    assert len(slots) == 2 and all(np.abs(slot).sum() > 0 for slot in slots)  # Adam m and v.


def test_process_killed_with_sigkill_resumes_from_its_last_checkpoint(sample_data, tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            os.path.join(REPO, "train.py"),
            *train_flags(
                sample_data,
                tmp_path,
                "--batch_size=8",
                "--export_model_steps=10",
                "--num_epochs=1000",
            ),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not glob.glob(f"{tmp_path}/model.ckpt-20.index"):
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert glob.glob(f"{tmp_path}/model.ckpt-20.index")
    saved = latest_step(tmp_path)
    result = run_script(
        "train.py",
        *train_flags(sample_data, tmp_path, "--batch_size=8", f"--max_steps={saved + 3}"),
    )
    assert f"model.ckpt-{saved}" in result.stderr
    assert f"training step {saved + 1} |" in result.stderr
    assert latest_step(tmp_path) == saved + 3


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(sample_data, tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            os.path.join(REPO, "train.py"),
            *train_flags(sample_data, tmp_path, "--batch_size=8", "--num_epochs=1000"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not glob.glob(f"{tmp_path}/model.ckpt-10.index"):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "Received signal 15" in stderr
    last_logged = max(
        int(line.split("training step ")[1].split()[0])
        for line in stderr.splitlines()
        if "training step" in line
    )
    assert latest_step(tmp_path) == last_logged


def test_start_new_model_clears_train_dir(sample_data, tmp_path):
    run_script("train.py", *train_flags(sample_data, tmp_path, "--batch_size=16", "--max_steps=12"))
    (tmp_path / "stale.txt").write_text("left over")
    result = run_script(
        "train.py",
        *train_flags(
            sample_data, tmp_path, "--batch_size=16", "--max_steps=3", "--start_new_model"
        ),
    )
    assert "Removing existing train directory." in result.stderr
    assert not (tmp_path / "stale.txt").exists()
    assert latest_step(tmp_path) == 3


def test_model_flags_mismatch_prints_the_original_three_lines_and_exits_1(sample_data, tmp_path):
    run_script("train.py", *train_flags(sample_data, tmp_path, "--batch_size=16", "--max_steps=2"))
    result = run_script(
        "train.py",
        *train_flags(sample_data, tmp_path, "--batch_size=16", "--max_steps=4", "--model=MoeModel"),
        check=False,
    )
    assert result.returncode == 1
    assert "Model flags do not match existing file" in result.stderr
    assert "Please delete the file, change --train_dir, or pass flag --start_new_model" in (
        result.stderr
    )
    assert 'Ran model with flags: {"model": "MoeModel"' in result.stderr
    assert 'Previously ran with flags: {"model": "LogisticModel"' in result.stderr
    assert latest_step(tmp_path) == 2


def test_nan_loss_stops_with_the_step_and_saves_nothing(sample_data, tmp_path):
    result = run_script(
        "train.py",
        *train_flags(
            sample_data,
            tmp_path,
            "--batch_size=16",
            "--max_steps=50",
            "--optimizer=GradientDescentOptimizer",
            "--base_learning_rate=1e38",
            "--clip_gradient_norm=0",
        ),
        check=False,
    )
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(error) == 1 and "The loss became" in error[0] and "at step" in error[0]
    assert tf.train.latest_checkpoint(str(tmp_path)) is None


def test_unknown_model_is_a_one_line_error_and_leaves_no_model_flags(sample_data, tmp_path):
    result = run_script(
        "train.py", *train_flags(sample_data, tmp_path, "--model=Nope"), check=False
    )
    assert "--model='Nope' is not known" in one_error_line(result)
    # Checked before model_flags.json is written: the corrected command just runs.
    assert not (tmp_path / "model_flags.json").exists()


@pytest.mark.parametrize("name", ["label_loss", "optimizer"])
def test_unknown_loss_or_optimizer_names_leave_no_model_flags(sample_data, tmp_path, name):
    config = train.TrainConfig(
        train_data_pattern=f"{sample_data}/video/train*.tfrecord",
        train_dir=str(tmp_path),
        feature_names="mean_rgb,mean_audio",
        feature_sizes="1024,128",
        **{name: "Nope"},
    )
    assert f"--{name}='Nope' is not known" in error_line(train.train, config)
    assert not (tmp_path / "model_flags.json").exists()


def test_unmatched_training_pattern_is_the_original_message(tmp_path):
    result = run_script(
        "train.py",
        f"--train_data_pattern={tmp_path}/none*",
        f"--train_dir={tmp_path}/model",
        check=False,
    )
    assert result.returncode == 1
    assert f"ERROR: Unable to find training files. data_pattern='{tmp_path}/none*'." in (
        result.stderr
    )


def test_mixed_precision_trains_resumes_evaluates_and_predicts_like_float32(sample_data, tmp_path):
    # mixed_bfloat16 for 60 steps, then resumed under mixed_float16 (checkpoints of every
    # precision look alike), then eval.py and inference.py, which know nothing of it.
    flags = train_flags(sample_data, tmp_path, "--batch_size=32", "--num_epochs=100")
    run_script("train.py", *flags, "--max_steps=60", "--mixed_precision=mixed_bfloat16")
    resumed = run_script("train.py", *flags, "--max_steps=80", "--mixed_precision=mixed_float16")
    assert "Restoring from checkpoint" in resumed.stderr
    # Steps that loss scaling skips still count: the global step is the steps run.
    assert latest_step(tmp_path) == 80
    assert len(losses_logged(resumed.stderr)) == 20
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path)))
    dtypes = reader.get_variable_to_dtype_map()
    model_weights = [name for name in dtypes if name.startswith("model/")]
    assert model_weights and {dtypes[name] for name in model_weights} == {tf.float32}
    gap, random_gap = validate_gap(tmp_path, sample_data)
    assert gap > 0.05 and gap > 10 * random_gap, (gap, random_gap)
    evaluated = run_script(
        "eval.py",
        f"--eval_data_pattern={sample_data}/video/validate*.tfrecord",
        f"--train_dir={tmp_path}",
        "--run_once",
    )
    logged_gap = float(evaluated.stderr.split("| GAP: ")[-1].split()[0])
    assert logged_gap == pytest.approx(gap, abs=6e-4)  # eval.py logs 3 decimals.
    run_script(
        "inference.py",
        f"--train_dir={tmp_path}",
        f"--input_data_pattern={sample_data}/video/test*.tfrecord",
        f"--output_file={tmp_path}/predictions.csv",
    )
    with open(f"{tmp_path}/predictions.csv") as file:
        assert file.readline() == "VideoId,LabelConfidencePairs\n"
        assert len(file.readlines()) > 0


def test_unknown_mixed_precision_policy_is_one_line(sample_data, tmp_path):
    config = train.TrainConfig(
        train_dir=str(tmp_path),
        train_data_pattern=f"{sample_data}/video/train*.tfrecord",
        mixed_precision="float16",
    )
    line = error_line(train.train, config)
    assert "mixed_precision" in line and "mixed_bfloat16" in line, line


def test_batches_prefetched_to_a_device_train_as_the_host_batches(sample_data):
    # The one-GPU input path (train.prefetched_to), with the CPU standing in for the GPU.
    reader = readers.create_reader(False, "mean_rgb,mean_audio", "1024,128")
    dataset = reader.get_dataset(f"{sample_data}/video/train*.tfrecord", 16)
    dataset = dataset.map(readers.numeric_features).take(3)
    results = []
    for batches in (dataset, train.prefetched_to(dataset, "/cpu:0")):
        keras.utils.set_random_seed(0)
        config = train.TrainConfig(batch_size=16)
        model = models.create_built_model("LogisticModel", reader, config.model_hyperparameters)
        optimizer = train.create_optimizer(config, 16)
        optimizer.build(model.trainable_variables)
        step = train.make_train_step(
            model, optimizer, losses.CrossEntropyLoss(), config, tf.distribute.get_strategy()
        )
        logged = [float(step(batch)["label_loss"]) for batch in batches]
        results.append((logged, [weight.numpy() for weight in model.trainable_variables]))
    (host_losses, host_weights), (device_losses, device_weights) = results
    assert len(host_losses) == 3 and host_losses == device_losses
    for host, device in zip(host_weights, device_weights):
        np.testing.assert_array_equal(host, device)
