"""train.py --ema_decay: the averages it checkpoints; eval, export and inference use them."""

import json
import logging
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import REPO, assert_top_k

import eval as eval_script
import export_model
import inference
import models
import train
import trained_model

DECAY = 0.75


def config(sample_data, train_dir, max_steps: int, ema_decay: float) -> train.TrainConfig:
    """Plain SGD with a large step on tiny batches: the weights move visibly each step."""
    return train.TrainConfig(
        train_dir=str(train_dir),
        train_data_pattern=f"{sample_data}/video/train*.tfrecord",
        feature_names="mean_audio",  # A small model: quick to save and restore.
        feature_sizes="128",
        batch_size=4,
        num_readers=1,
        optimizer="GradientDescentOptimizer",
        base_learning_rate=0.5,
        max_steps=max_steps,
        ema_decay=ema_decay,
    )


def checkpoint_path(train_dir, step: int) -> str:
    return f"{train_dir}/{train.CHECKPOINT_PREFIX}-{step}"


def raw_weights(train_dir, step: int) -> list[np.ndarray]:
    """Returns a checkpoint's trainable weights, as trained (not averaged), in model order."""
    model, _, _ = trained_model.model_from_flags(str(train_dir))
    tf.train.Checkpoint(model=model).restore(checkpoint_path(train_dir, step)).expect_partial()
    return [weight.numpy() for weight in model.trainable_variables]


def saved_averages(train_dir, step: int) -> list[np.ndarray]:
    """Returns the weight averages a checkpoint holds, read from the file itself."""
    path = checkpoint_path(train_dir, step)
    saved = tf.train.load_checkpoint(path)
    count = len(trained_model.weight_average_keys(path))
    return [
        saved.get_tensor(f"ema/averages/{index}/.ATTRIBUTES/VARIABLE_VALUE")
        for index in range(count)
    ]


@pytest.fixture(scope="module")
def averaged_run(sample_data, tmp_path_factory):
    """One step without --ema_decay, then resumed with it to step 2, then to step 3."""
    train_dir = tmp_path_factory.mktemp("averaged_run")
    assert train.train(config(sample_data, train_dir, 1, ema_decay=0.0)) == 1
    assert train.train(config(sample_data, train_dir, 2, ema_decay=DECAY)) == 2
    assert train.train(config(sample_data, train_dir, 3, ema_decay=DECAY)) == 3
    return train_dir


def test_checkpointed_averages_are_the_hand_computed_average_of_each_steps_weights(averaged_run):
    weights = {step: raw_weights(averaged_run, step) for step in (1, 2, 3)}
    assert not trained_model.holds_weight_averages(checkpoint_path(averaged_run, 1))
    # Resumed from a checkpoint without averages: they start from its weights (step 1),
    # then, resumed again, continue from the averages saved at step 2.
    expected = weights[1]
    for step in (2, 3):
        expected = [
            np.float32(DECAY) * average + np.float32(1 - DECAY) * weight
            for average, weight in zip(expected, weights[step])
        ]
        saved = saved_averages(averaged_run, step)
        assert len(saved) == len(expected) == 2  # The logistic layer's kernel and bias.
        for average, hand_computed in zip(saved, expected):
            assert average.dtype == np.float32
            np.testing.assert_allclose(average, hand_computed, rtol=1e-6, atol=1e-7)
    # SGD moved the weights each step, so the average is not any step's weights.
    assert np.abs(weights[3][0] - weights[2][0]).max() > 1e-4
    assert np.abs(saved_averages(averaged_run, 3)[0] - weights[3][0]).max() > 1e-4


def test_eval_export_and_inference_use_the_averages(averaged_run, sample_data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="absl")
    train_dir = str(averaged_run)
    eval_script.evaluate(
        eval_script.EvalConfig(
            train_dir=train_dir,
            eval_data_pattern=f"{sample_data}/video/validate0000.tfrecord",
            batch_size=32,
            run_once=True,
        )
    )
    assert "Using the weight averages (--ema_decay) saved in" in caplog.text
    exported = str(tmp_path / "exported")
    export_model.main(export_model.ExportConfig(train_dir=train_dir, output_dir=exported))
    shard = f"{sample_data}/video/test0000.tfrecord"
    inference.main(
        inference.InferenceConfig(
            train_dir=train_dir,
            input_data_pattern=shard,
            output_file=str(tmp_path / "predictions.csv"),
        )
    )

    # The reference: a model whose weights are set to the averages by hand.
    model, reader, _ = trained_model.model_from_flags(train_dir)
    tf.train.Checkpoint(model=model).restore(checkpoint_path(train_dir, 3)).expect_partial()
    batch = next(iter(reader.get_dataset(shard, 1000)))
    raw = models.forward(model, batch["video_matrix"], batch["num_frames"], training=False)
    for weight, average in zip(model.trainable_variables, saved_averages(train_dir, 3)):
        weight.assign(average)
    outputs = models.forward(model, batch["video_matrix"], batch["num_frames"], training=False)
    averaged, raw = outputs["predictions"].numpy(), raw["predictions"].numpy()
    assert np.abs(averaged - raw).max() > 1e-3

    records = tf.constant([record.numpy() for record in tf.data.TFRecordDataset(shard)])
    for saved_model in (trained_model.inference_model_path(train_dir), exported):
        served = export_model.load(saved_model)(example_bytes=records)
        for row, (classes, scores) in enumerate(
            zip(served["class_indexes"].numpy(), served["predictions"].numpy())
        ):
            assert_top_k(averaged[row], classes, scores, k=20)
        served_raw = np.take_along_axis(raw, served["class_indexes"].numpy(), axis=1)
        assert np.abs(served["predictions"].numpy() - served_raw).max() > 1e-3
    table = pd.read_csv(tmp_path / "predictions.csv", dtype=str, keep_default_na=False)
    assert len(table) == len(averaged)
    for row, pairs in enumerate(table["LabelConfidencePairs"]):
        values = pairs.split()
        assert_top_k(
            averaged[row], [int(c) for c in values[::2]], [float(s) for s in values[1::2]], 20
        )


def test_resuming_without_ema_decay_drops_the_averages_with_a_warning(
    averaged_run, sample_data, tmp_path, caplog
):
    train_dir = tmp_path / "train_dir"
    shutil.copytree(averaged_run, train_dir)
    assert train.train(config(sample_data, train_dir, 4, ema_decay=0.0)) == 4
    assert "holds weight averages; without --ema_decay they are dropped" in caplog.text
    assert not trained_model.holds_weight_averages(checkpoint_path(train_dir, 4))


TWO_REPLICA_STEP = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import losses, train, trained_model, video_level_models

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    config = train.TrainConfig(optimizer="GradientDescentOptimizer", base_learning_rate=0.5,
                               batch_size=4, ema_decay=0.75)
    rng = np.random.default_rng(0)
    batch = {"video_matrix": rng.normal(size=(8, 6)).astype(np.float32),
             "num_frames": np.ones(8, np.int32),
             "labels": (rng.random((8, 5)) < 0.3).astype(np.float32)}
    with strategy.scope():
        model = video_level_models.LogisticModel(vocab_size=5)
        model(tf.zeros([1, 6]))
        optimizer = train.create_optimizer(config, 8)
        optimizer.build(model.trainable_variables)
        weight_average = trained_model.WeightAverage(model.trainable_variables)
    before = [v.numpy() for v in model.trainable_variables]
    step = train.make_train_step(
        model, optimizer, losses.CrossEntropyLoss(), config, strategy, weight_average
    )
    for distributed_batch in strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(batch)
    ):
        step(distributed_batch)
    after = [v.numpy() for v in model.trainable_variables]
    copies = [[c.numpy() for c in strategy.experimental_local_results(average)]
              for average in weight_average.averages]
    errors = [float(np.abs(c - (b - 0.25 * (b - a))).max())
              for b, a, replicas in zip(before, after, copies) for c in replicas]
    print(json.dumps({"copies": [len(replicas) for replicas in copies], "max_error": max(errors),
                      "moved": max(float(np.abs(a - b).max()) for a, b in zip(after, before))}))
""")


def test_two_replicas_keep_one_average_of_their_shared_weights():
    result = subprocess.run(
        [sys.executable, "-c", TWO_REPLICA_STEP],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["copies"] == [2, 2]  # Kernel and bias, one copy per replica.
    assert outcome["moved"] > 1e-3
    assert outcome["max_error"] < 1e-6
