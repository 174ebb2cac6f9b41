"""The model interface and the registry that maps a --model name to a class.

A model is one class: build the layers in `__init__(vocab_size, **hyperparameters)` and
compute the predictions in `create_model`, the original starter code's contract. Keras
tracks the layers, so checkpoints, distribution strategies and SavedModel export work
without further code. A model module lists its models in `MODELS` and its hyperparameter
flags in a `Hyperparameters` dataclass, so adding a model changes that one file.
"""

import dataclasses
from typing import Any

import keras
import tensorflow as tf

import errors
import features
import settings


class BaseModel(keras.Model):
    """Inherit from this class when implementing new models."""

    def __init__(self, vocab_size: int, **unused_hyperparameters):
        """Creates the model's layers.

        Args:
          vocab_size: number of classes to predict.
          **unused_hyperparameters: every model hyperparameter flag, by flag name; each
            model takes the ones it uses.
        """
        super().__init__()
        self.vocab_size = vocab_size

    def build(self, input_shape):
        """Nothing to create up front: layers build when they first see their inputs.

        Models whose own weights depend on the input size create them here instead.
        """

    def create_model(self, model_input, vocab_size, **unused_params) -> dict[str, tf.Tensor]:
        """Returns {"predictions": float [batch, vocab_size]} and optionally more.

        Args:
          model_input: the L2-normalised features, [batch, features] (video level) or
            [batch, max_frames, features] (frame level).
          vocab_size: number of classes.
          **unused_params: num_frames, is_training, labels and model-specific values.

        Returns:
          A dict with "predictions" (probabilities), and optionally "loss" (replaces the
          label loss), "aux_predictions" ([heads, batch, vocab_size] probabilities of
          further heads, each trained on the labels too) and "regularization_loss" (added
          to the layer regularizers).
        """
        raise NotImplementedError()

    def call(self, model_input, num_frames=None, training=False):
        """Keras entry point: forwards to create_model with the original's arguments.

        Without num_frames (as when Keras traces the model for saving) every frame counts.
        """
        if num_frames is None:
            frames = tf.shape(model_input)[1] if len(model_input.shape) == 3 else 1
            num_frames = tf.fill(tf.shape(model_input)[:1], frames)
        return self.create_model(
            model_input, self.vocab_size, num_frames=num_frames, is_training=training
        )


def slim_l2(scale: float) -> keras.regularizers.Regularizer:
    """Returns the L2 regularizer of tf.contrib.slim: scale * Σw² / 2 (Keras' L2 has no ½)."""
    return keras.regularizers.L2(scale / 2.0)


def model_classes() -> dict[str, type[BaseModel]]:
    """Returns every model class by name: each model module's MODELS mapping.

    A frame-level model of the same name as a video-level one wins, as in the original.
    """
    # Imported here: the model modules import this one for BaseModel.
    import frame_level_models
    import video_level_models

    return dict(sorted({**video_level_models.MODELS, **frame_level_models.MODELS}.items()))


def hyperparameter_tables() -> tuple[type, ...]:
    """Returns the model modules' hyperparameter dataclasses (each field is a flag)."""
    import frame_level_models
    import video_level_models

    return (frame_level_models.Hyperparameters, video_level_models.Hyperparameters)


def default_hyperparameters() -> dict[str, Any]:
    """Returns every model hyperparameter at its default, by name."""
    values = {}
    for table in hyperparameter_tables():
        values.update(dataclasses.asdict(table()))
    return dict(sorted(values.items()))


def hyperparameter_flags() -> dict[str, Any]:
    """Returns the parsed values of every model hyperparameter flag, by name."""
    values = {}
    for table in hyperparameter_tables():
        values.update(dataclasses.asdict(settings.from_flags(table)))
    return dict(sorted(values.items()))


def create_model(name: str, vocab_size: int, hyperparameters: dict[str, Any]) -> BaseModel:
    """Returns a new model of the named class.

    Args:
      name: a model class name, as the --model flag.
      vocab_size: number of classes.
      hyperparameters: model hyperparameter values by name, as hyperparameter_flags().

    Raises:
      UserError: no model has that name.
    """
    return errors.chosen(name, model_classes(), "model")(vocab_size, **hyperparameters)


def create_built_model(name: str, reader, hyperparameters: dict[str, Any]) -> BaseModel:
    """Returns a new model for the reader's batches, its variables created.

    Creating the variables up front lets a checkpoint be restored into them and an
    optimizer be built over them.

    Args:
      name: a model class name, as the --model flag.
      reader: the readers.BaseReader whose batches the model will see.
      hyperparameters: model hyperparameter flag values.
    """
    model = create_model(name, reader.num_classes, hyperparameters)
    input_size = sum(reader.feature_sizes)
    max_frames = getattr(reader, "max_frames", None)
    shape = [1, max_frames, input_size] if max_frames else [1, input_size]
    model(tf.zeros(shape), num_frames=tf.ones([1], tf.int32), training=False)
    untracked = untracked_weights(model)
    if untracked:
        raise TypeError(
            f"{name}: checkpoints would not save {', '.join(untracked)}; assign each layer "
            "to an attribute of its own (Keras 3 checkpoints skip layers held in lists)"
        )
    return model


def untracked_weights(model: keras.Model) -> list[str]:
    """Returns the paths of the model's weights that a tf.train.Checkpoint would not save.

    Checkpoints follow object attributes; a weight reached otherwise (through a layer held
    in a list, in Keras 3) would silently keep its initial value on restore.
    """
    tracked = {id(item) for item in tf.train.TrackableView(model).descendants()}
    return [weight.path for weight in model.weights if id(weight) not in tracked]


def forward(model: BaseModel, video_matrix, num_frames, training: bool) -> dict[str, tf.Tensor]:
    """Returns the model's outputs on a reader batch's features, dequantized and normalised.

    Under a mixed-precision policy the layers compute in 16 bits; the outputs are cast
    back to float32 here, so losses and metrics are computed in float32.
    """
    model_input = features.dequantized_and_normalized(video_matrix, num_frames)
    outputs = model(model_input, num_frames=num_frames, training=training)
    return {
        name: tf.cast(value, tf.float32) if value.dtype.is_floating else value
        for name, value in outputs.items()
    }


def label_loss(
    outputs: dict[str, tf.Tensor], labels, loss_function, label_weights=None
) -> tf.Tensor:
    """Returns the model's own "loss" if it gives one, else the loss function's.

    The loss function's is summed over the predictions and each of the aux_predictions
    (as the 2018 winners' train.py did). label_weights (segment mode: 1 at the rated
    pairs) weights each term of the loss.
    """
    if "loss" in outputs:
        return outputs["loss"]
    weights = {} if label_weights is None else {"label_weights": label_weights}
    heads = [outputs["predictions"]]
    if "aux_predictions" in outputs:
        heads += tf.unstack(outputs["aux_predictions"])
    return tf.add_n([loss_function.calculate_loss(head, labels, **weights) for head in heads])
