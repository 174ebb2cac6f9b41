r"""Writes the mean of a training directory's last checkpoints as a new training directory.

  python average_checkpoints.py --train_dir=/tmp/yt8m_model --num_checkpoints=5 \
      --output_dir=/tmp/yt8m_model_averaged

Averaging the weights of the last few checkpoints is a trick the YouTube-8M challenge
winners used. The model is
rebuilt from <train_dir>/model_flags.json, each of the --num_checkpoints latest
checkpoints is restored into it in turn, and every model weight, trainable and not (batch
norm's moving mean and variance too), is summed in float64 and divided by their number.

--output_dir becomes a training directory of its own, which eval.py, export_model.py and
inference.py read as any other: model_flags.json copied from --train_dir and one
checkpoint, model.ckpt-<step of the newest averaged checkpoint>, that holds the model only
and no optimizer state. The checkpoints' other keys are ignored: with train.py
--ema_decay the raw weights are averaged, not the weight averages. The directory is
written under a temporary name and renamed when complete.
"""

import quiet_tensorflow  # noqa: F401 (first: hides TensorFlow's start-up noise)

# isort: split
import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import atomic_write
import cli
import trained_model
from errors import UserError
from settings import AT_LEAST_ONE, Settings, setting
from train import CHECKPOINT_PREFIX


@dataclasses.dataclass(frozen=True)
class AverageConfig(Settings):
    """The averaging settings, each a flag of average_checkpoints.py."""

    train_dir: str = setting("/tmp/yt8m_model/", "Training directory whose checkpoints to average.")
    num_checkpoints: int = setting(
        5,
        "How many of train_dir's latest checkpoints to average (all of them must exist).",
        AT_LEAST_ONE,
    )
    output_dir: str = setting(
        "",
        "New training directory to write: model_flags.json and the averaged checkpoint. "
        "It must not exist yet, or be empty.",
    )


def latest_checkpoints(train_dir: str, num_checkpoints: int) -> list[str]:
    """Returns the num_checkpoints latest checkpoint prefixes of train_dir, oldest first.

    Raises:
      UserError: train_dir has no checkpoint, or fewer than num_checkpoints.
    """
    state = tf.train.get_checkpoint_state(train_dir)
    paths = list(state.all_model_checkpoint_paths) if state else []
    if not paths:
        raise UserError(f"No checkpoint found in {{train_dir}}={train_dir}.", "train_dir")
    if len(paths) < num_checkpoints:
        # Refused rather than averaging fewer: the result would not be what was asked for,
        # and a warning is easily missed in a script.
        raise UserError(
            f"{{num_checkpoints}}={num_checkpoints}, but {{train_dir}}={train_dir} holds "
            f"only {len(paths)} checkpoints; pass {{num_checkpoints}}={len(paths)} or fewer.",
            "num_checkpoints",
            "train_dir",
        )
    paths = paths[-num_checkpoints:]
    missing = [path for path in paths if not tf.io.gfile.exists(f"{path}.index")]
    if missing:
        raise UserError(
            f"{missing[0]}: listed in {os.path.join(train_dir, 'checkpoint')} but its files "
            "are missing."
        )
    return paths


def averaged_model(train_dir: str, checkpoint_paths: list[str]):
    """Returns the model of train_dir holding the mean weights of the checkpoints.

    Every floating-point weight of the model (trainable and non-trainable) is the float64
    mean of its values in the checkpoints, cast back to its dtype; any other weight (none
    in today's models) keeps its value in the last checkpoint. Only the checkpoints'
    `model` is read: their optimizer, the weight averages of train.py --ema_decay and
    any other key are ignored.

    Raises:
      UserError: no usable model_flags.json, or a checkpoint that lacks some of the
        model's weights.
    """
    model, _, _ = trained_model.model_from_flags(train_dir)
    checkpoint = tf.train.Checkpoint(model=model)
    weights = [weight for weight in model.weights if keras.backend.is_float_dtype(weight.dtype)]
    sums = [np.zeros(weight.shape, np.float64) for weight in weights]
    for path in checkpoint_paths:
        logging.info("Reading %s", path)
        # The raw weights: not restore_weights, which takes the --ema_decay averages.
        trained_model.restore_matching(checkpoint, path)
        for total, weight in zip(sums, weights, strict=True):
            total += weight.numpy()
    for total, weight in zip(sums, weights, strict=True):
        weight.assign((total / len(checkpoint_paths)).astype(weight.dtype))
    return model


def same_directory(first: str, second: str) -> bool:
    """True if two directory paths name the same directory (local paths resolved)."""
    if "://" in first or "://" in second:
        return first.rstrip("/") == second.rstrip("/")
    return os.path.realpath(first) == os.path.realpath(second)


def check_settings(config: AverageConfig) -> None:
    """Raises a one-line UserError for missing or contradictory flags."""
    if not config.output_dir:
        raise UserError(
            "{output_dir} is required: the new training directory to write the averaged "
            "checkpoint to.",
            "output_dir",
        )
    if same_directory(config.output_dir, config.train_dir):
        raise UserError(
            "{output_dir} must differ from {train_dir}: the averaged checkpoint would be "
            "mixed with the ones it averages.",
            "output_dir",
            "train_dir",
        )
    if tf.io.gfile.exists(config.output_dir) and not tf.io.gfile.isdir(config.output_dir):
        raise UserError(f"{{output_dir}}={config.output_dir} is a file.", "output_dir")
    # Refused rather than replaced: a mistyped --output_dir must not delete a directory.
    if tf.io.gfile.isdir(config.output_dir) and tf.io.gfile.listdir(config.output_dir):
        raise UserError(
            f"{{output_dir}}={config.output_dir} exists and is not empty; remove it or "
            "choose a new directory.",
            "output_dir",
        )


def main(config: AverageConfig) -> None:
    """Averages the latest checkpoints of --train_dir into --output_dir."""
    check_settings(config)
    checkpoint_paths = latest_checkpoints(config.train_dir, config.num_checkpoints)
    model = averaged_model(config.train_dir, checkpoint_paths)
    global_step = int(checkpoint_paths[-1].rsplit("-", 1)[1])
    with atomic_write.replaced_atomically(config.output_dir) as temporary:
        tf.io.gfile.makedirs(temporary)
        tf.io.gfile.copy(
            trained_model.model_flags_path(config.train_dir),
            trained_model.model_flags_path(temporary),
        )
        # The manager records the checkpoint by a relative path, so it survives the rename.
        manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=model),
            temporary,
            max_to_keep=None,
            checkpoint_name=CHECKPOINT_PREFIX,
        )
        manager.save(checkpoint_number=global_step)
    logging.info(
        "Averaged %d checkpoints (%s to %s) into %s",
        len(checkpoint_paths),
        os.path.basename(checkpoint_paths[0]),
        os.path.basename(checkpoint_paths[-1]),
        os.path.join(config.output_dir, f"{CHECKPOINT_PREFIX}-{global_step}"),
    )


if __name__ == "__main__":
    cli.run(main, AverageConfig)
