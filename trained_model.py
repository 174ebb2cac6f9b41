"""A training directory's model: model_flags.json, and the model rebuilt from it.

train.py writes `<train_dir>/model_flags.json` (the model, its features, loss and
hyperparameters); eval.py, export_model.py and inference.py read it back to rebuild the
same model and reader, and restore a checkpoint into it: the weight averages of
train.py --ema_decay where the checkpoint holds them, otherwise the weights.
"""

import json
import os

import tensorflow as tf
from absl import logging

import atomic_write
import checkpoint_files
import models
import readers
from errors import UserError

MODEL_FLAGS_FILE = "model_flags.json"
INFERENCE_MODEL_DIR = "inference_model"
SEGMENT_INFERENCE_MODEL_DIR = "segment_inference_model"
# The training checkpoint's key of the weight averages, beside "model" and "optimizer".
WEIGHT_AVERAGE_KEY = "ema"

# The keys of the original's model_flags.json; the others are hyperparameters, except:
ORIGINAL_MODEL_FLAGS = ("model", "feature_sizes", "feature_names", "frame_features", "label_loss")
# keys added after the first release, and their value in directories written before.
LATER_KEYS = {"id_feature": "id"}


class ModelFlagsMismatchError(UserError):
    """Training resumed with other model flags than train_dir's model_flags.json holds."""

    def __init__(self, path: str, model_flags: dict, existing: dict):
        super().__init__(
            f"Model flags do not match existing file {path}. Please delete the file, change "
            "{train_dir}, or pass flag {start_new_model}",
            "train_dir",
            "start_new_model",
        )
        self.details = (
            f"Ran model with flags: {json.dumps(model_flags)}",
            f"Previously ran with flags: {json.dumps(existing)}",
        )


def model_flags_path(train_dir: str) -> str:
    """Returns the path of a training directory's model_flags.json."""
    return os.path.join(train_dir, MODEL_FLAGS_FILE)


def inference_model_path(train_dir: str, segment_labels: bool = False) -> str:
    """Returns where eval.py writes the inference model of a training directory.

    With segment_labels, the model that scores 5-frame segments (eval.py --segment_labels).
    """
    name = SEGMENT_INFERENCE_MODEL_DIR if segment_labels else INFERENCE_MODEL_DIR
    return os.path.join(train_dir, name)


def write_or_check_model_flags(train_dir: str, model_flags: dict) -> None:
    """Writes model_flags.json, or checks that the existing one holds the same flags.

    Raises:
      ModelFlagsMismatchError: the file exists and differs.
    """
    path = model_flags_path(train_dir)
    if not tf.io.gfile.exists(path):
        atomic_write.write_text(path, json.dumps(model_flags))
        return
    existing = load_json(path)
    # A hyperparameter added since the directory was written had its default value there.
    if {**LATER_KEYS, **models.default_hyperparameters(), **existing} != model_flags:
        raise ModelFlagsMismatchError(path, model_flags, existing)


def read_model_flags(train_dir: str, hint: str) -> dict:
    """Returns train_dir's model_flags.json, keys added later filled with their old value.

    Raises:
      UserError: the file is missing ("Cannot find file <path>. <hint>") or lacks keys.
    """
    path = model_flags_path(train_dir)
    if not tf.io.gfile.exists(path):
        raise UserError(f"Cannot find file {path}. {hint}")
    model_flags = {**LATER_KEYS, **load_json(path)}
    missing = [key for key in ORIGINAL_MODEL_FLAGS if key not in model_flags]
    if missing:
        raise UserError(f"{path} lacks the keys {missing}.")
    return model_flags


def load_json(path: str) -> dict:
    """Returns a JSON object read from a file; a malformed one is a UserError."""
    with tf.io.gfile.GFile(path) as file:
        try:
            value = json.load(file)
        except json.JSONDecodeError as error:
            raise UserError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} should hold a JSON object.")
    return value


def hyperparameters(model_flags: dict) -> dict:
    """Returns the model hyperparameters recorded in a model_flags.json dict."""
    recorded = ORIGINAL_MODEL_FLAGS + tuple(LATER_KEYS)
    return {key: value for key, value in model_flags.items() if key not in recorded}


def reader_for(model_flags: dict, segment_labels: bool = False) -> readers.BaseReader:
    """Returns the reader of the features a model was trained on.

    Frames stay uint8 until the (XLA-compiled) model step dequantizes them.

    Raises:
      UserError: segment_labels for a video-level model.
    """
    return readers.create_reader(
        model_flags["frame_features"],
        model_flags["feature_names"],
        model_flags["feature_sizes"],
        id_feature=model_flags["id_feature"],
        quantized_frames=model_flags["frame_features"],
        segment_labels=segment_labels,
    )


def model_from_flags(
    train_dir: str, segment_labels: bool = False
) -> tuple[models.BaseModel, readers.BaseReader, dict]:
    """Returns (new model, reader, model_flags dict) as train_dir's model_flags.json says.

    Args:
      train_dir: a training directory.
      segment_labels: the reader reads rated segments (2019 files) instead of videos.

    Raises:
      UserError: train_dir has no usable model_flags.json.
    """
    model_flags = read_model_flags(train_dir, "Did you run train.py on the same --train_dir?")
    reader = reader_for(model_flags, segment_labels)
    model = models.create_built_model(model_flags["model"], reader, hyperparameters(model_flags))
    return model, reader, model_flags


def restored_model(
    train_dir: str, checkpoint_path: str | None = None, segment_labels: bool = False
):
    """Returns (model, reader, checkpoint path): the model restored from a checkpoint.

    Args:
      train_dir: a training directory (model_flags.json and checkpoints).
      checkpoint_path: a checkpoint prefix; default the latest in train_dir.
      segment_labels: the reader reads rated segments (2019 files) instead of videos.

    Raises:
      UserError: no model_flags.json or no checkpoint.
    """
    model, reader, _ = model_from_flags(train_dir, segment_labels)
    checkpoint_path = checkpoint_path or checkpoint_files.latest(train_dir)
    if not checkpoint_path:
        raise UserError(f"No checkpoint found in {{train_dir}}={train_dir}.", "train_dir")
    restore_weights(tf.train.Checkpoint(model=model), checkpoint_path)
    return model, reader, checkpoint_path


def restore_weights(checkpoint: tf.train.Checkpoint, checkpoint_path: str) -> None:
    """Restores the model's weights (not the optimizer's); fails if any is missing.

    Where the checkpoint holds weight averages (train.py --ema_decay), the trainable
    weights take the averages' values; batch-norm moving statistics and other
    non-trainable weights are restored as they are, as TF1's ExponentialMovingAverage
    was used. One log line says so.

    Args:
      checkpoint: tf.train.Checkpoint(model=<the model to restore>).
      checkpoint_path: a checkpoint prefix written by train.py.

    Raises:
      UserError: the checkpoint lacks some of the model's variables, e.g. because
        model_flags.json describes another model than the one trained.
    """
    restore_matching(checkpoint, checkpoint_path)
    if holds_weight_averages(checkpoint_path):
        averages = WeightAverage(checkpoint.model.trainable_variables)
        restore_weight_averages(averages, checkpoint_path)
        averages.copy_to(checkpoint.model.trainable_variables)
        logging.info("Using the weight averages (--ema_decay) saved in %s.", checkpoint_path)


def restore_matching(checkpoint: tf.train.Checkpoint, checkpoint_path: str) -> None:
    """Restores every object of `checkpoint` from the file; the file may hold more.

    Raises:
      UserError: the file lacks some of the objects' variables, or is damaged.
    """
    try:
        with checkpoint_files.damage_explained(checkpoint_path):
            status = checkpoint.restore(checkpoint_path)
        status.assert_existing_objects_matched().expect_partial()
    except AssertionError as error:
        raise UserError(
            f"{checkpoint_path} does not match the model that model_flags.json describes: "
            f"{str(error).split(' Showing')[0]}"
        ) from None


class WeightAverage(tf.Module):
    """Exponential moving averages of a model's trainable weights (train.py --ema_decay).

    One float32 variable per weight, starting at the weight's value; the i-th belongs to
    the i-th of model.trainable_variables, an order that every process building the model
    from model_flags.json shares. Created in a distribution strategy's scope they are
    mirrored and assignable in replica context: every replica holds the same weights, so
    the first replica's update is every replica's.
    """

    def __init__(self, weights: list):
        super().__init__(name="weight_average")
        self.averages = [
            tf.Variable(
                tf.identity(weight),
                trainable=False,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            for weight in weights
        ]

    def update(self, weights: list, decay: float) -> None:
        """Moves each average towards its weight: decay · average + (1 - decay) · weight."""
        for average, weight in zip(self.averages, weights, strict=True):
            # Faithful: TF1's form, average -= (1 - decay) · (average - weight).
            average.assign_sub((1 - decay) * (average - weight))

    def copy_to(self, weights: list) -> None:
        """Sets each weight to its average."""
        for average, weight in zip(self.averages, weights, strict=True):
            weight.assign(average)


def holds_weight_averages(checkpoint_path: str) -> bool:
    """True if a training checkpoint holds weight averages (train.py --ema_decay)."""
    return bool(weight_average_keys(checkpoint_path))


def weight_average_keys(checkpoint_path: str) -> list[str]:
    """Returns the checkpoint keys of the weight averages a checkpoint holds."""
    prefix = f"{WEIGHT_AVERAGE_KEY}/"
    return [name for name in checkpoint_files.keys(checkpoint_path) if name.startswith(prefix)]


def restore_weight_averages(weight_average: WeightAverage, checkpoint_path: str) -> None:
    """Restores the averages of a checkpoint that holds them, one per trainable weight.

    Raises:
      UserError: the checkpoint holds another number of averages than of weights.
    """
    saved = len(weight_average_keys(checkpoint_path))
    if saved != len(weight_average.averages):
        raise UserError(
            f"{checkpoint_path} holds {saved} weight averages for a model of "
            f"{len(weight_average.averages)} trainable weights."
        )
    restore_matching(tf.train.Checkpoint(**{WEIGHT_AVERAGE_KEY: weight_average}), checkpoint_path)
