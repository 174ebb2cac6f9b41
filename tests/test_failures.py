"""Failures a user can cause or meet: one `ERROR:` line, exit status 1, nothing half-written.

Flag values out of range, places that cannot be written, a full disk, a damaged
checkpoint, data with nothing in it, video ids the CSV must carry, and the leftovers of
a killed run. A full disk is a small tmpfs mounted in a private mount namespace
(`unshare -rm`); where the machine allows none, those tests skip.
"""

import csv
import dataclasses
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import REPO, error_line, one_error_line, run_script

import atomic_write
import average_checkpoints
import checkpoint_files
import describe_data
import ensemble_predictions
import eval as eval_script
import export_model
import frame_level_models
import inference
import make_sample_data
import score_predictions
import segment_eval_inference
import segment_submission
import settings
import train
import video_level_models
from errors import UserError

AUDIO = {"feature_names": "mean_audio", "feature_sizes": "128"}
AUDIO_FLAGS = ("--feature_names=mean_audio", "--feature_sizes=128")


@pytest.fixture(scope="module")
def trained(sample_data, tmp_path_factory) -> str:
    """A LogisticModel on mean_audio (6 MB checkpoints) at steps 10 and 20, exported."""
    train_dir = str(tmp_path_factory.mktemp("failures_model"))
    train.train(training(train_dir, sample_data, max_steps=20))
    export_model.main(
        export_model.ExportConfig(train_dir=train_dir, output_dir=f"{train_dir}/inference_model")
    )
    return train_dir


def training(train_dir, sample_data, **overrides) -> train.TrainConfig:
    """Returns the fixture's training settings, checkpointing every 10 steps."""
    config = {
        "train_dir": str(train_dir),
        "train_data_pattern": f"{sample_data}/video/train*.tfrecord",
        "batch_size": 32,
        "export_model_steps": 10,
        **AUDIO,
        **overrides,
    }
    return train.TrainConfig(**config)


def copy_of(train_dir, tmp_path) -> str:
    copy = str(tmp_path / "model")
    shutil.copytree(train_dir, copy)
    return copy


def leftovers(directory) -> list[str]:
    """Returns the names in a directory that are no output: temporaries of a write."""
    return [name for name in os.listdir(directory) if ".tmp" in name or "_temp" in name]


# ---------------------------------------------------------------------------------------
# Flag values out of range.

SETTINGS_CLASSES = [
    train.TrainConfig,
    eval_script.EvalConfig,
    inference.InferenceConfig,
    export_model.ExportConfig,
    average_checkpoints.AverageConfig,
    ensemble_predictions.EnsembleConfig,
    score_predictions.ScoreConfig,
    describe_data.DescribeConfig,
    make_sample_data.SampleDataConfig,
    segment_eval_inference.SegmentEvalConfig,
    video_level_models.Hyperparameters,
    frame_level_models.Hyperparameters,
]


def out_of_range_values(valid: settings.Range, kind: type) -> list:
    """Returns the values just outside each end of a range."""
    step = 1 if kind is int else 0.5
    values = []
    if valid.low is not None:
        values.append(valid.low if valid.low_open else valid.low - step)
    if valid.high is not None:
        values.append(valid.high if valid.high_open else valid.high + step)
    return [kind(value) for value in values]


OUT_OF_RANGE = [
    pytest.param(cls, field.name, value, id=f"{cls.__module__}.{field.name}={value}")
    for cls in SETTINGS_CLASSES
    for field in settings.flag_fields(cls)
    if settings.valid_range(field)
    for value in out_of_range_values(
        settings.valid_range(field), int if "int" in str(field.type) else float
    )
]


def test_every_numeric_flag_has_a_range():
    numeric = [
        f"{cls.__module__}.{field.name}"
        for cls in SETTINGS_CLASSES
        for field in settings.flag_fields(cls)
        if any(kind in str(field.type) for kind in ("int", "float"))
        and not settings.valid_range(field)
    ]
    assert numeric == []
    assert len(OUT_OF_RANGE) > 50


@pytest.mark.fast
@pytest.mark.parametrize("cls,name,value", OUT_OF_RANGE)
def test_each_value_outside_a_flags_range_is_refused_naming_flag_and_range(cls, name, value):
    cls()  # The defaults are in range.
    with pytest.raises(UserError) as error:
        cls(**{name: value})
    valid = settings.valid_range(next(f for f in dataclasses.fields(cls) if f.name == name))
    assert f"ERROR: {error.value.with_settings_named('--')}" == (
        f"ERROR: --{name}={value} is out of range: it must be {valid}."
    )


@pytest.mark.parametrize(
    "script,flag,expected",
    [
        ("train.py", "--batch_size=0", "--batch_size=0 is out of range: it must be at least 1."),
        ("eval.py", "--batch_size=-1", "--batch_size=-1 is out of range: it must be at least 1."),
        (
            "inference.py",
            "--batch_size=0",
            "--batch_size=0 is out of range: it must be at least 1.",
        ),
    ],
)
def test_a_flag_out_of_range_is_one_line_before_anything_is_written(
    sample_data, tmp_path, script, flag, expected
):
    data = {
        "train.py": "--train_data_pattern",
        "eval.py": "--eval_data_pattern",
        "inference.py": "--input_data_pattern",
    }[script]
    output = [f"--output_file={tmp_path}/p.csv"] if script == "inference.py" else []
    result = run_script(
        script,
        flag,
        f"--train_dir={tmp_path}/model",
        f"{data}={sample_data}/video/train*.tfrecord",
        *output,
        check=False,
    )
    assert one_error_line(result) == f"ERROR: {expected}"
    assert os.listdir(tmp_path) == []  # No train_dir, model or CSV.


# ---------------------------------------------------------------------------------------
# Places that cannot be written.


def test_a_train_dir_under_a_regular_file_is_one_line(sample_data, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    result = run_script(
        "train.py",
        f"--train_dir={tmp_path}/file/model",
        f"--train_data_pattern={sample_data}/video/train*.tfrecord",
        *AUDIO_FLAGS,
        check=False,
    )
    assert one_error_line(result) == (
        f"ERROR: Cannot write --train_dir={tmp_path}/file/model: {tmp_path}/file is a file, "
        "not a directory; nothing was trained."
    )


def test_an_export_dir_under_a_regular_file_is_one_line(trained, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    config = export_model.ExportConfig(train_dir=trained, output_dir=f"{tmp_path}/file/saved")
    assert error_line(export_model.main, config) == (
        f"ERROR: Cannot write {tmp_path}/file/saved: {tmp_path}/file is a file, not a "
        "directory; nothing was written there."
    )


def test_eval_into_a_train_dir_whose_eval_dir_is_a_file_is_one_line(trained, sample_data, tmp_path):
    train_dir = copy_of(trained, tmp_path)
    (tmp_path / "model" / "eval").write_text("not a directory")
    config = eval_script.EvalConfig(
        train_dir=train_dir,
        eval_data_pattern=f"{sample_data}/video/validate0000.tfrecord",
        run_once=True,
    )
    line = error_line(eval_script.evaluate, config)
    assert line.startswith(f"ERROR: Cannot write {train_dir}/eval: "), line
    assert line.endswith("a part of the path is a file, not a directory; nothing was evaluated.")


# ---------------------------------------------------------------------------------------
# A disk that fills up: a small file system of the test's own.


def run_on_small_filesystem(mount_dir, size: str, copy_to, command: list[str]):
    """Runs a command with a tmpfs of `size` on mount_dir; copies its files to copy_to.

    The tmpfs lives in a private mount namespace and goes with the command.
    """
    os.makedirs(mount_dir, exist_ok=True)
    os.makedirs(copy_to, exist_ok=True)
    shell = (
        f"mount -t tmpfs -o size={size} none {shlex.quote(str(mount_dir))} || exit 99; "
        f"{shlex.join(command)}; status=$?; "
        f"cp -a {shlex.quote(str(mount_dir))}/. {shlex.quote(str(copy_to))}/; exit $status"
    )
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", shell], capture_output=True, text=True, cwd=REPO
    )
    if result.returncode == 99:
        pytest.skip(f"no small file system can be mounted here: {result.stderr.strip()}")
    return result


@pytest.fixture(scope="module")
def small_filesystems(tmp_path_factory):
    """Skips unless this machine lets a test mount a tmpfs in its own namespace."""
    mount_dir = tmp_path_factory.mktemp("probe")
    if shutil.which("unshare") is None:
        pytest.skip("no small file system can be mounted here: unshare is missing")
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m none {mount_dir}"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"no small file system can be mounted here: {probe.stderr.strip()}")


def script(name: str, *args: str) -> list[str]:
    return [sys.executable, os.path.join(REPO, name), *args]


def test_a_full_disk_at_a_checkpoint_keeps_the_previous_one_the_latest(
    small_filesystems, sample_data, tmp_path
):
    disk, after = tmp_path / "disk", tmp_path / "after"
    result = run_on_small_filesystem(
        disk,
        "9m",  # The first 6 MB checkpoint fits, the second does not.
        after,
        script(
            "train.py",
            f"--train_dir={disk}/model",
            f"--train_data_pattern={sample_data}/video/train*.tfrecord",
            *AUDIO_FLAGS,
            "--batch_size=32",
            "--max_steps=30",
            "--export_model_steps=10",
        ),
    )
    assert one_error_line(result) == (
        f"ERROR: Cannot write checkpoint {disk}/model/model.ckpt-20: the disk is full; "
        f"{disk}/model/model.ckpt-10 is still the latest checkpoint, which train.py resumes from."
    )
    model = after / "model"
    assert leftovers(model) == []
    assert not [name for name in os.listdir(model) if name.startswith("model.ckpt-20")]
    assert checkpoint_files.latest(str(model)) == f"{model}/model.ckpt-10"
    assert checkpoint_files.reads_back(f"{model}/model.ckpt-10")


def test_a_full_disk_under_the_predictions_csv_leaves_no_file(
    small_filesystems, trained, sample_data, tmp_path
):
    disk, after = tmp_path / "disk", tmp_path / "after"
    result = run_on_small_filesystem(
        disk,
        "4k",  # The header fits; 100 rows do not.
        after,
        script(
            "inference.py",
            f"--train_dir={trained}",
            f"--input_data_pattern={sample_data}/video/test*.tfrecord",
            f"--output_file={disk}/p.csv",
        ),
    )
    assert one_error_line(result) == (
        f"ERROR: Cannot write {disk}/p.csv: the disk is full; nothing was written there."
    )
    assert os.listdir(after) == []


def test_a_read_only_file_system_under_the_train_dir_is_one_line(
    small_filesystems, sample_data, tmp_path
):
    disk = tmp_path / "disk"
    os.makedirs(disk)
    shell = f"mount -t tmpfs -o size=1m,ro none {disk} || exit 99; " + shlex.join(
        script(
            "train.py",
            f"--train_dir={disk}/model",
            f"--train_data_pattern={sample_data}/video/train*.tfrecord",
            *AUDIO_FLAGS,
        )
    )
    result = subprocess.run(["unshare", "-rm", "sh", "-c", shell], capture_output=True, text=True)
    assert one_error_line(result) == (
        f"ERROR: Cannot write --train_dir={disk}/model: the file system is read-only; "
        "nothing was trained."
    )


# ---------------------------------------------------------------------------------------
# A damaged checkpoint.


def test_a_truncated_checkpoint_is_named_with_the_previous_one_and_removing_it_resumes(
    trained, sample_data, tmp_path
):
    train_dir = copy_of(trained, tmp_path)
    os.truncate(f"{train_dir}/model.ckpt-20.data-00000-of-00001", 100_000)
    result = run_script(
        "train.py",
        f"--train_dir={train_dir}",
        f"--train_data_pattern={sample_data}/video/train*.tfrecord",
        *AUDIO_FLAGS,
        "--max_steps=25",
        check=False,
    )
    assert one_error_line(result) == (
        f"ERROR: Checkpoint {train_dir}/model.ckpt-20 is damaged and cannot be read (Read "
        f"less bytes than requested); the previous complete checkpoint is "
        f"{train_dir}/model.ckpt-10: remove {train_dir}/model.ckpt-20.* and run again to use it."
    )
    for name in os.listdir(train_dir):
        if name.startswith("model.ckpt-20."):
            os.remove(os.path.join(train_dir, name))
    assert train.train(training(train_dir, sample_data, max_steps=25)) == 25
    assert checkpoint_files.listed(train_dir)[-2:] == [
        f"{train_dir}/model.ckpt-20",  # Saved again, from step 10 on.
        f"{train_dir}/model.ckpt-25",
    ]
    assert checkpoint_files.reads_back(f"{train_dir}/model.ckpt-20")


def test_a_checkpoint_with_a_bad_checksum_is_named_by_eval(trained, sample_data, tmp_path):
    train_dir = copy_of(trained, tmp_path)
    with open(f"{train_dir}/model.ckpt-20.data-00000-of-00001", "r+b") as file:
        file.seek(1_000_000)
        file.write(b"damaged!")
    config = eval_script.EvalConfig(
        train_dir=train_dir,
        eval_data_pattern=f"{sample_data}/video/validate0000.tfrecord",
        run_once=True,
    )
    line = error_line(eval_script.evaluate, config)
    assert line.startswith(f"ERROR: Checkpoint {train_dir}/model.ckpt-20 is damaged"), line
    assert "Checksum does not match" in line
    assert f"the previous complete checkpoint is {train_dir}/model.ckpt-10" in line


def test_a_checkpoint_with_a_truncated_index_is_named_by_export(trained, tmp_path):
    train_dir = copy_of(trained, tmp_path)
    os.truncate(f"{train_dir}/model.ckpt-10.index", 10)
    config = export_model.ExportConfig(
        train_dir=train_dir, checkpoint=f"{train_dir}/model.ckpt-10", output_dir=f"{tmp_path}/e"
    )
    assert error_line(export_model.main, config) == (
        f"ERROR: Checkpoint {train_dir}/model.ckpt-10 is damaged and cannot be read (file is "
        "too short to be an sstable); no earlier checkpoint there reads back whole "
        "(train.py --start_new_model starts over)."
    )
    assert not os.path.exists(f"{tmp_path}/e")


# ---------------------------------------------------------------------------------------
# Data with nothing in it.


@pytest.fixture
def empty_files(tmp_path) -> str:
    for name in ("empty0.tfrecord", "empty1.tfrecord"):
        (tmp_path / name).write_bytes(b"")
    return f"{tmp_path}/empty*.tfrecord"


def test_eval_on_files_without_records_is_one_line(trained, empty_files, tmp_path):
    train_dir = copy_of(trained, tmp_path)
    result = run_script(
        "eval.py",
        f"--train_dir={train_dir}",
        f"--eval_data_pattern={empty_files}",
        "--run_once",
        check=False,
    )
    assert one_error_line(result) == (
        f"ERROR: The files of --eval_data_pattern='{empty_files}' hold no videos to evaluate."
    )


def test_train_on_files_without_records_is_one_line_and_saves_nothing(empty_files, tmp_path):
    config = train.TrainConfig(
        train_dir=str(tmp_path / "model"), train_data_pattern=empty_files, **AUDIO
    )
    assert error_line(train.train, config) == (
        f"ERROR: The files of --train_data_pattern='{empty_files}' hold no videos to train on."
    )
    assert checkpoint_files.listed(str(tmp_path / "model")) == []


def inference_error(train_dir, data_pattern: str, output_dir) -> str:
    """Returns inference.py's error line for the data; checks that it wrote nothing."""
    config = inference.InferenceConfig(
        train_dir=train_dir, input_data_pattern=data_pattern, output_file=f"{output_dir}/p.csv"
    )
    line = error_line(inference.main, config)
    assert not os.path.exists(f"{output_dir}/p.csv")
    assert leftovers(output_dir) == []
    return line


def test_inference_on_files_without_records_writes_no_csv(trained, empty_files, tmp_path):
    assert inference_error(trained, empty_files, tmp_path) == (
        f"ERROR: The files of --input_data_pattern='{empty_files}' hold no videos to predict; "
        "nothing was written."
    )


# ---------------------------------------------------------------------------------------
# Video ids the CSV must carry.

AWKWARD_IDS = [
    "plain",
    "carriage\rreturn",
    "windows\r\nline",
    "new\nline",
    "com,ma",
    'quo"te',
    '"',
    "\u2028separator",
    "vertical\x0btab",
    "next\x85line",
    " spaced ",
    "NA",
    "",
    "ünïcødé",
]


def write_videos(path: str, video_ids: list[bytes]) -> str:
    with tf.io.TFRecordWriter(path) as writer:
        for video_id in video_ids:
            feature = {
                "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[video_id])),
                "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
                "mean_audio": tf.train.Feature(float_list=tf.train.FloatList(value=[0.1] * 128)),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    return path


def test_every_video_id_round_trips_through_the_csv(trained, tmp_path):
    data = write_videos(str(tmp_path / "ids.tfrecord"), [i.encode() for i in AWKWARD_IDS])
    output = tmp_path / "p.csv"
    inference.main(
        inference.InferenceConfig(
            train_dir=trained, input_data_pattern=data, output_file=str(output), batch_size=4
        )
    )
    by_pandas = pd.read_csv(output, dtype=str, keep_default_na=False)
    assert list(by_pandas["VideoId"]) == AWKWARD_IDS
    with open(output, newline="", encoding="utf-8") as file:
        by_csv = list(csv.reader(file))
    assert [row[0] for row in by_csv[1:]] == AWKWARD_IDS
    ensembled = tmp_path / "e.csv"
    ensemble_predictions.main(
        ensemble_predictions.EnsembleConfig(input_files=[str(output)], output_file=str(ensembled))
    )
    assert list(pd.read_csv(ensembled, dtype=str, keep_default_na=False)["VideoId"]) == (
        AWKWARD_IDS
    )


def test_an_id_that_is_not_utf8_is_refused_naming_its_record(trained, tmp_path):
    data = write_videos(str(tmp_path / "ids.tfrecord"), [b"ok1", b"ok2", b"bad\xff\xfe", b"ok3"])
    assert inference_error(trained, data, tmp_path) == (
        f"ERROR: {data}: record 2: the video id b'bad\\xff\\xfe' is not UTF-8 text, which the "
        "CSV holds; nothing was written."
    )


@pytest.mark.fast
@pytest.mark.parametrize("segment_id", [b"a b:5", b"a,b:5", b"a\rb:5", b"\xff:5"])
def test_a_segment_id_the_submission_cannot_hold_is_refused(segment_id):
    segment_submission.check_segment_ids(np.array([b"fine:0", b"fine:5"]))
    with pytest.raises(UserError, match="The segment id .* nothing was written."):
        segment_submission.check_segment_ids(np.array([b"fine:0", segment_id]))


# ---------------------------------------------------------------------------------------
# Leftovers of a killed run.


def exited_pid() -> int:
    """Returns the id of a process that has exited: what a killed run leaves in its names."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_killed_inferences_temporary_is_removed_by_the_next_run(trained, sample_data, tmp_path):
    output = tmp_path / "p.csv"
    killed = tmp_path / f"p.csv.tmp{exited_pid()}"
    killed.write_text("VideoId,LabelConfidencePairs\nhalf")
    inference.main(
        inference.InferenceConfig(
            train_dir=trained,
            input_data_pattern=f"{sample_data}/video/test0000.tfrecord",
            output_file=str(output),
        )
    )
    assert sorted(os.listdir(tmp_path)) == ["p.csv"]


def test_a_killed_directory_swap_is_undone_by_the_next_write(tmp_path):
    model = tmp_path / "inference_model"
    swapped_out = tmp_path / f"inference_model.old{exited_pid()}"  # Killed between renames.
    swapped_out.mkdir()
    (swapped_out / "saved_model.pb").write_text("the complete previous model")
    half_written = tmp_path / f"inference_model.tmp{exited_pid()}"
    half_written.mkdir()
    atomic_write.remove_leftovers(str(model))
    assert sorted(os.listdir(tmp_path)) == ["inference_model"]
    assert (model / "saved_model.pb").read_text() == "the complete previous model"


def test_a_running_writers_temporary_is_left_alone(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        running = tmp_path / f"p.csv.tmp{sleeper.pid}"
        running.write_text("being written")
        atomic_write.write_text(str(tmp_path / "p.csv"), "new")
        assert running.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_killed_checkpoint_saves_leftovers_are_removed_when_training_resumes(
    trained, sample_data, tmp_path
):
    train_dir = copy_of(trained, tmp_path)
    os.makedirs(f"{train_dir}/model.ckpt-30_temp")
    with open(f"{train_dir}/model.ckpt-30_temp/part-00000-of-00001.data-00000-of-00001", "w") as f:
        f.write("half a checkpoint")
    with open(f"{train_dir}/checkpoint.tmp0123456789abcdef", "w") as file:
        file.write('model_checkpoint_path: "model.ckpt-30"')
    with open(f"{train_dir}/model.ckpt-40.data-00000-of-00001", "w") as file:
        file.write("moved into place, its index never written")
    listed = checkpoint_files.listed(train_dir)
    assert train.train(training(train_dir, sample_data, max_steps=21)) == 21
    assert leftovers(train_dir) == []
    assert not os.path.exists(f"{train_dir}/model.ckpt-40.data-00000-of-00001")
    assert checkpoint_files.listed(train_dir) == [*listed, f"{train_dir}/model.ckpt-21"]
