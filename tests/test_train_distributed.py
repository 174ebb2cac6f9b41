"""The multi-replica and multi-worker training paths, on CPU.

Two logical CPU devices stand in for two GPUs; two local processes with TF_CONFIG on
loopback ports stand in for two machines.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO

TWO_REPLICA_STEP = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import losses, train, video_level_models

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    config = train.TrainConfig(optimizer="GradientDescentOptimizer", base_learning_rate=1.0,
                               learning_rate_decay=1.0, clip_gradient_norm=0.0,
                               regularization_penalty=0.0, batch_size=4)
    rng = np.random.default_rng(0)
    batch = {"video_matrix": rng.normal(size=(8, 6)).astype(np.float32),
             "num_frames": np.ones(8, np.int32),
             "labels": (rng.random((8, 5)) < 0.3).astype(np.float32)}
    with strategy.scope():
        model = video_level_models.LogisticModel(vocab_size=5)
        model(tf.zeros([1, 6]))
        optimizer = train.create_optimizer(config, 8)
        optimizer.build(model.trainable_variables)
    before = [v.numpy() for v in model.trainable_variables]
    loss_fn = losses.CrossEntropyLoss()

    # Expected: the original's towers, each the mean loss of its half, gradients summed.
    expected = [np.zeros_like(w) for w in before]
    for half in (slice(0, 4), slice(4, 8)):
        with tf.GradientTape() as tape:
            x = tf.nn.l2_normalize(batch["video_matrix"][half], -1)
            loss = loss_fn.calculate_loss(model(x)["predictions"], batch["labels"][half])
        for total, grad in zip(expected, tape.gradient(loss, model.trainable_variables)):
            total -= grad.numpy()

    step = train.make_train_step(model, optimizer, loss_fn, config, strategy)
    dataset = tf.data.Dataset.from_tensors(batch)
    for distributed_batch in strategy.experimental_distribute_dataset(dataset):
        step(distributed_batch)
    after = [v.numpy() for v in model.trainable_variables]
    errors = [float(np.abs((a - b) - e).max()) for a, b, e in zip(after, before, expected)]
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "max_error": max(errors),
                      "step": int(optimizer.iterations.numpy())}))
""")

TWO_REPLICA_TRAINING = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from absl import logging
    import train
    logging.set_verbosity(logging.INFO)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    config = train.TrainConfig(train_dir=sys.argv[1], train_data_pattern=sys.argv[2],
                               feature_names="mean_rgb,mean_audio", feature_sizes="1024,128",
                               model="MoeModel", batch_size=8, max_steps=12,
                               model_hyperparameters={"moe_num_mixtures": 2})
    print("final step", train.train(config, strategy))
""")


def run_python(code: str, *args: str, env=None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_two_replicas_sum_their_mean_gradients_like_the_original_towers():
    result = json.loads(run_python(TWO_REPLICA_STEP).stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["step"] == 1
    assert result["max_error"] < 1e-5


def test_two_replica_training_uses_a_global_batch_and_checkpoints(sample_data, tmp_path):
    result = run_python(TWO_REPLICA_TRAINING, str(tmp_path), f"{sample_data}/video/train*.tfrecord")
    assert "final step 12" in result.stdout
    assert "Using batch size of 16 for training." in result.stderr
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-12")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.parametrize("files", ["train*.tfrecord", "train0000.tfrecord"])
def test_two_workers_finish_with_identical_weights(sample_data, tmp_path, files):
    ports = free_ports(2)
    cluster = {"master": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{ports[1]}"]}
    processes = []
    for task_type, train_dir in (("master", tmp_path / "chief"), ("worker", tmp_path / "worker")):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": task_type, "index": 0}}),
        )
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    os.path.join(REPO, "train.py"),
                    f"--train_data_pattern={sample_data}/video/{files}",
                    f"--train_dir={train_dir}",
                    "--feature_names=mean_rgb,mean_audio",
                    "--feature_sizes=1024,128",
                    "--batch_size=8",
                    "--max_steps=15",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
                env=env,
            )
        )
    outputs = []
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
        outputs.append(stderr)
    checksums = [
        [
            line.split("weights checksum ")[1]
            for line in stderr.splitlines()
            if "weights checksum" in line
        ]
        for stderr in outputs
    ]
    assert len(checksums[0]) == len(checksums[1]) == 1
    assert checksums[0] == checksums[1]
    # Only the chief writes checkpoints and summaries into its train_dir.
    assert tf.train.latest_checkpoint(str(tmp_path / "chief")).endswith("model.ckpt-15")
    assert tf.train.latest_checkpoint(str(tmp_path / "worker")) is None
    assert "training step 10 |" in outputs[0] and "Hit@1" in outputs[0]
    assert np.all(["Hit@1" not in line for line in outputs[1].splitlines()])
    # One file for two workers: tf.data shards records, not files, and both are told so.
    warned = ["1 training files for 2 workers: workers may read the same" in o for o in outputs]
    assert warned == [files == "train0000.tfrecord"] * 2
