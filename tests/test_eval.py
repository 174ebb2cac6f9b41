"""eval.py run as a user runs it: the metrics, summaries, loop mode and inference model."""

import glob
import os
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    REPO,
    assert_top_k,
    checkpoint_predictions,
    error_line,
    one_error_line,
    run_script,
    summary_events,
)

import eval as eval_script
import eval_util
import models
import trained_model

VIDEO_FLAGS = ("--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128")


def train_model(sample_data, train_dir, *extra):
    run_script(
        "train.py",
        f"--train_data_pattern={sample_data}/video/train*.tfrecord",
        f"--train_dir={train_dir}",
        *VIDEO_FLAGS,
        "--batch_size=32",
        *extra,
    )


@pytest.fixture(scope="module")
def trained(sample_data, tmp_path_factory):
    """A MoeModel trained for 40 steps, then evaluated once on the validate split."""
    train_dir = str(tmp_path_factory.mktemp("trained"))
    train_model(
        sample_data, train_dir, "--model=MoeModel", "--moe_num_mixtures=3", "--max_steps=40"
    )
    result = run_script(
        "eval.py",
        f"--eval_data_pattern={sample_data}/video/validate*.tfrecord",
        f"--train_dir={train_dir}",
        "--batch_size=30",
        "--run_once",
    )
    return train_dir, result


def expected_metrics(train_dir, sample_data) -> dict:
    """The metrics of the restored model's own predictions, computed here in one piece."""
    _, predictions, labels = checkpoint_predictions(
        train_dir, f"{sample_data}/video/validate*.tfrecord"
    )
    metrics = eval_util.EvaluationMetrics(labels.shape[1], 20, None)
    metrics.accumulate(predictions, labels, np.zeros(1))
    result = metrics.get()
    return {
        "hit_at_one": eval_util.calculate_hit_at_one(predictions, labels),
        "perr": eval_util.calculate_precision_at_equal_recall_rate(predictions, labels),
        "gap": eval_util.calculate_gap(predictions, labels),
        "map": float(np.mean(result["aps"])),
        "num_classes": len(result["aps"]),
    }


def final_line(stderr: str) -> str:
    lines = [
        line.split("] ", 1)[1] for line in stderr.splitlines() if "] epoch/eval number" in line
    ]
    assert len(lines) == 1, stderr
    return lines[0]


def test_run_once_prints_the_metrics_of_the_models_own_predictions(trained, sample_data):
    train_dir, result = trained
    line = final_line(result.stderr)
    assert line.startswith("epoch/eval number 40 | Avg_Hit@1: ")
    printed = dict(re.findall(r"(Avg_Hit@1|Avg_PERR|MAP|GAP|num_classes): ([0-9.]+)", line))
    expected = expected_metrics(train_dir, sample_data)
    assert float(printed["Avg_Hit@1"]) == pytest.approx(expected["hit_at_one"], abs=5e-4)
    assert float(printed["Avg_PERR"]) == pytest.approx(expected["perr"], abs=5e-4)
    assert float(printed["GAP"]) == pytest.approx(expected["gap"], abs=5e-4)
    assert float(printed["MAP"]) == pytest.approx(expected["map"], abs=5e-4)
    assert int(printed["num_classes"]) == expected["num_classes"]
    assert expected["gap"] > 0.05
    assert "Total: examples_processed: 100" in result.stderr
    assert "examples_processed: 30 | global_step 40 | Batch Hit@1: " in result.stderr


def test_summaries_are_written_to_train_dir_eval_at_the_checkpoint_step(trained, sample_data):
    train_dir, _ = trained
    events = summary_events(os.path.join(train_dir, "eval"))
    tags = set(events.Tags()["tensors"])
    for tag in (
        "GlobalStep/Eval_Hit@1",
        "GlobalStep/Eval_Perr",
        "GlobalStep/Eval_Loss",
        "GlobalStep/Eval_Example_Second",
        "Epoch/Eval_Avg_Hit@1",
        "Epoch/Eval_Avg_Perr",
        "Epoch/Eval_Avg_Loss",
        "Epoch/Eval_MAP",
        "Epoch/Eval_GAP",
    ):
        assert tag in tags, tag
    gap_events = events.Tensors("Epoch/Eval_GAP")
    assert [event.step for event in gap_events] == [40]
    gap = float(tf.make_ndarray(gap_events[0].tensor_proto))
    # Not to the last bit: eval.py's XLA-compiled forward pass may order classes whose
    # scores differ by float rounding otherwise than the test's eager one.
    assert gap == pytest.approx(expected_metrics(train_dir, sample_data)["gap"], abs=1e-4)


LOAD_IN_FRESH_PROCESS = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    assert not any(name in sys.modules for name in ("readers", "models", "export_model"))
    serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
    records = [r.numpy() for r in tf.data.TFRecordDataset(sys.argv[2])]
    outputs = serve(example_bytes=tf.constant(records))
    np.savez(sys.argv[3], **{key: value.numpy() for key, value in outputs.items()})
""")


def test_inference_model_reproduces_the_checkpoint_in_a_fresh_process(
    trained, sample_data, tmp_path
):
    train_dir, _ = trained
    saved_model = os.path.join(train_dir, "inference_model")
    shard = f"{sample_data}/video/test0000.tfrecord"
    output = tmp_path / "outputs.npz"
    # Run from an empty directory: nothing of this repository can be imported there.
    subprocess.run(
        [sys.executable, "-c", LOAD_IN_FRESH_PROCESS, saved_model, shard, str(output)],
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
    )
    served = np.load(output, allow_pickle=True)  # video_id is an array of bytes objects.
    model, reader, _ = trained_model.restored_model(train_dir)
    batch = next(iter(reader.get_dataset(shard, 1000)))
    outputs = models.forward(model, batch["video_matrix"], batch["num_frames"], training=False)
    predictions = outputs["predictions"].numpy()
    np.testing.assert_array_equal(served["video_id"], batch["video_ids"].numpy())
    for row, (classes, scores) in enumerate(zip(served["class_indexes"], served["predictions"])):
        assert_top_k(predictions[row], classes, scores, k=20)


def evaluator_of(train_dir, sample_data, batch_size) -> eval_script.Evaluator:
    """An in-process Evaluator on the validate split (100 videos)."""
    return eval_script.Evaluator(
        train_dir, f"{sample_data}/video/validate*.tfrecord", batch_size, 20, 1
    )


def test_the_smaller_last_batch_runs_padded_through_the_one_compiled_model(trained, sample_data):
    train_dir, _ = trained
    padded = evaluator_of(train_dir, sample_data, batch_size=30)  # 30, 30, 30, then 10.
    trained_model.restore_weights(padded.checkpoint, tf.train.latest_checkpoint(train_dir))
    padded_metrics = padded.evaluate(40)
    assert padded.padded_forward.experimental_get_tracing_count() == 1
    whole = evaluator_of(train_dir, sample_data, batch_size=100)  # One batch, no padding.
    trained_model.restore_weights(whole.checkpoint, tf.train.latest_checkpoint(train_dir))
    whole_metrics = whole.evaluate(40)
    for name in ("avg_hit_at_one", "avg_perr", "gap", "avg_loss"):
        assert padded_metrics[name] == pytest.approx(whole_metrics[name], rel=1e-5), name


def test_the_inference_model_is_exported_again_only_for_another_checkpoint(trained, sample_data):
    train_dir, _ = trained
    saved_model = os.path.join(trained_model.inference_model_path(train_dir), "saved_model.pb")
    exported = os.stat(saved_model).st_mtime_ns
    evaluator = evaluator_of(train_dir, sample_data, batch_size=100)
    assert evaluator.evaluate_latest() == 40
    assert os.stat(saved_model).st_mtime_ns == exported  # The same checkpoint: kept.
    # The same name written anew (training started over by hand): exported again.
    index = tf.train.latest_checkpoint(train_dir) + ".index"
    os.utime(index, ns=(exported + 10**9, exported + 10**9))
    assert evaluator_of(train_dir, sample_data, batch_size=100).evaluate_latest() == 40
    assert os.stat(saved_model).st_mtime_ns != exported


def test_loop_mode_evaluates_each_new_checkpoint_once(sample_data, tmp_path):
    train_model(sample_data, tmp_path, "--max_steps=10")
    process = subprocess.Popen(
        [
            sys.executable,
            os.path.join(REPO, "eval.py"),
            f"--eval_data_pattern={sample_data}/video/validate0000.tfrecord",
            f"--train_dir={tmp_path}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        wait_for_eval_summary(tmp_path, step=10)
        train_model(sample_data, tmp_path, "--max_steps=20")
        wait_for_eval_summary(tmp_path, step=20)
        time.sleep(3)  # Several more polls: nothing new to evaluate.
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    evaluated = re.findall(r"epoch/eval number (\d+) \|", stderr)
    assert evaluated == ["10", "20"], stderr


def wait_for_eval_summary(train_dir, step, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if glob.glob(os.path.join(train_dir, "eval", "events*")):
            events = summary_events(os.path.join(train_dir, "eval"))
            if "Epoch/Eval_GAP" in events.Tags()["tensors"] and step in [
                event.step for event in events.Tensors("Epoch/Eval_GAP")
            ]:
                return
        time.sleep(0.5)
    raise AssertionError(f"no evaluation of step {step} within {timeout} s")


def evaluate_in_process(train_dir, data_pattern) -> str:
    """Returns the error line of eval.py's job run once in this process."""
    config = eval_script.EvalConfig(
        train_dir=str(train_dir), eval_data_pattern=data_pattern, run_once=True
    )
    return error_line(eval_script.evaluate, config)


def test_missing_model_flags_json_is_the_original_message(sample_data, tmp_path):
    line = evaluate_in_process(tmp_path, f"{sample_data}/video/validate*.tfrecord")
    assert line == (
        f"ERROR: Cannot find file {tmp_path}/model_flags.json. "
        "Did you run train.py on the same --train_dir?"
    )


def test_empty_eval_pattern_is_the_original_message(tmp_path):
    result = run_script("eval.py", f"--train_dir={tmp_path}", "--run_once", check=False)
    assert one_error_line(result) == (
        "ERROR: 'eval_data_pattern' was not specified. Nothing to evaluate."
    )


def test_unmatched_eval_pattern_names_the_pattern(trained, tmp_path):
    train_dir, _ = trained
    line = evaluate_in_process(train_dir, f"{tmp_path}/none*")
    assert line.startswith("ERROR: Unable to find the evaluation files.")
    assert f"{tmp_path}/none*" in line


def test_frame_level_files_for_a_video_level_model_name_the_expected_format(trained, sample_data):
    train_dir, _ = trained
    result = run_script(
        "eval.py",
        f"--eval_data_pattern={sample_data}/frame/validate*.tfrecord",
        f"--train_dir={train_dir}",
        "--run_once",
        check=False,
    )
    line = one_error_line(result)
    assert "validate0000.tfrecord: record 0: a frame-level tf.train.SequenceExample" in line
    assert "video-level tf.train.Example records were expected" in line
