"""Models that classify a video from its frame-level features [batch, max_frames, features].

Train them with --frame_features --feature_names=rgb,audio --feature_sizes=1024,128.
"""

import dataclasses
import math

import keras
import tensorflow as tf

import errors
import model_util
import models
import video_level_models
from settings import setting


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """The frame-level models' hyperparameter flags, recorded in model_flags.json."""

    iterations: int = setting(30, "Number of frames per batch for DBoF.")
    dbof_add_batch_norm: bool = setting(True, "Adds batch normalization to the DBoF model.")
    sample_random_frames: bool = setting(
        True,
        "If true samples random frames (for frame level models). If false, a random sequence "
        "of frames is sampled instead.",
    )
    dbof_cluster_size: int = setting(8192, "Number of units in the DBoF cluster layer.")
    dbof_hidden_size: int = setting(1024, "Number of units in the DBoF hidden layer.")
    dbof_pooling_method: str = setting(
        "max",
        "The pooling method used in the DBoF cluster layer. Choices are 'average' and 'max'.",
    )
    dbof_activation: str = setting(
        "sigmoid",
        "The nonlinear activation method for cluster and hidden dense layer, e.g., sigmoid, relu6.",
    )
    video_level_classifier_model: str = setting(
        "MoeModel",
        "Some Frame-Level models can be decomposed into a generalized pooling operation "
        "followed by a classifier layer",
    )
    lstm_cells: int = setting(1024, "Number of LSTM cells.")
    lstm_layers: int = setting(2, "Number of LSTM layers.")


# The settings of slim.batch_norm, which the original used. Synchronized: with several
# replicas, batch statistics (and so the moving averages) cover the global batch, so every
# replica holds the same moving statistics (the original's towers updated shared ones).
BATCH_NORM = dict(momentum=0.999, epsilon=1e-3, center=True, scale=True, synchronized=True)


def video_level_classifier(name: str, vocab_size: int, hyperparameters: dict) -> models.BaseModel:
    """Returns the video-level model (e.g. MoeModel) that classifies the pooled frames."""
    cls = errors.chosen(name, video_level_models.MODELS, "video_level_classifier_model")
    return cls(vocab_size, **hyperparameters)


class FrameLevelLogisticModel(models.BaseModel):
    """Logistic regression over the average of a video's real frames."""

    def __init__(self, vocab_size: int, **unused_hyperparameters):
        """Creates the logistic layer (Glorot weights, zero biases, L2 1e-8)."""
        super().__init__(vocab_size)
        self.logistic = keras.layers.Dense(
            vocab_size, activation="sigmoid", kernel_regularizer=models.slim_l2(1e-8)
        )

    def create_model(self, model_input, vocab_size, num_frames, **unused_params):
        """Returns {"predictions": sigmoid(W · Σ_t frames_t / num_frames + b)}.

        The sum runs over all max_frames rows; padding rows are zero, so it is the average
        of the real frames.
        """
        num_frames = tf.cast(tf.expand_dims(num_frames, 1), model_input.dtype)
        avg_pooled = tf.reduce_sum(model_input, axis=[1]) / num_frames
        return {"predictions": self.logistic(avg_pooled)}


class DbofModel(models.BaseModel):
    """Deep Bag of Frames: sampled frames → cluster layer → pooling → hidden → classifier.

    Frames are sampled in training and at evaluation alike (as the original did; eval.py
    seeds the sampling). Batch normalization uses slim's momentum 0.999 and ε 1e-3, its
    moving statistics updated in training and used in inference mode.
    """

    def __init__(
        self,
        vocab_size: int,
        iterations: int = Hyperparameters.iterations,
        dbof_add_batch_norm: bool = Hyperparameters.dbof_add_batch_norm,
        sample_random_frames: bool = Hyperparameters.sample_random_frames,
        dbof_cluster_size: int = Hyperparameters.dbof_cluster_size,
        dbof_hidden_size: int = Hyperparameters.dbof_hidden_size,
        dbof_pooling_method: str = Hyperparameters.dbof_pooling_method,
        dbof_activation: str = Hyperparameters.dbof_activation,
        video_level_classifier_model: str = Hyperparameters.video_level_classifier_model,
        **hyperparameters,
    ):
        """Creates the layers; the feature size is taken from the first input."""
        super().__init__(vocab_size)
        if dbof_activation not in ("sigmoid", "relu6"):
            raise errors.UserError(
                f"{{dbof_activation}}={dbof_activation!r}: use 'sigmoid' or 'relu6'.",
                "dbof_activation",
            )
        if dbof_pooling_method not in ("max", "average"):
            raise errors.UserError(
                f"{{dbof_pooling_method}}={dbof_pooling_method!r}: use 'max' or 'average'.",
                "dbof_pooling_method",
            )
        self.iterations = iterations
        self.add_batch_norm = dbof_add_batch_norm
        self.sample_random_frames = sample_random_frames
        self.cluster_size = dbof_cluster_size
        self.hidden_size = dbof_hidden_size
        self.pooling_method = dbof_pooling_method
        self.activation = tf.nn.sigmoid if dbof_activation == "sigmoid" else tf.nn.relu6
        if dbof_add_batch_norm:
            self.input_bn = keras.layers.BatchNormalization(name="input_bn", **BATCH_NORM)
            self.cluster_bn = keras.layers.BatchNormalization(name="cluster_bn", **BATCH_NORM)
            self.hidden1_bn = keras.layers.BatchNormalization(name="hidden1_bn", **BATCH_NORM)
        self.classifier = video_level_classifier(
            video_level_classifier_model, vocab_size, hyperparameters
        )

    def build(self, input_shape):
        """Creates the cluster and hidden weights (normal, stddev 1/√fan_in), no L2."""
        feature_size = input_shape[-1]
        normal = keras.initializers.RandomNormal
        self.cluster_weights = self.add_weight(
            name="cluster_weights",
            shape=(feature_size, self.cluster_size),
            initializer=normal(stddev=1 / math.sqrt(feature_size)),
        )
        self.hidden1_weights = self.add_weight(
            name="hidden1_weights",
            shape=(self.cluster_size, self.hidden_size),
            initializer=normal(stddev=1 / math.sqrt(self.cluster_size)),
        )
        if not self.add_batch_norm:
            self.cluster_biases = self.add_weight(
                name="cluster_biases",
                shape=(self.cluster_size,),
                initializer=normal(stddev=1 / math.sqrt(feature_size)),
            )
            self.hidden1_biases = self.add_weight(
                name="hidden1_biases",
                shape=(self.hidden_size,),
                initializer=normal(stddev=0.01),
            )

    def create_model(self, model_input, vocab_size, num_frames, is_training=True, **unused_params):
        """Returns the classifier's output on the pooled, hidden-layer features."""
        num_frames = tf.reshape(tf.cast(num_frames, tf.float32), [-1, 1])
        if self.sample_random_frames:
            model_input = model_util.SampleRandomFrames(model_input, num_frames, self.iterations)
        else:
            model_input = model_util.SampleRandomSequence(model_input, num_frames, self.iterations)
        feature_size = model_input.shape[2]
        reshaped_input = tf.reshape(model_input, [-1, feature_size])
        if self.add_batch_norm:
            reshaped_input = self.input_bn(reshaped_input, training=is_training)
        activation = tf.matmul(reshaped_input, self.cluster_weights)
        if self.add_batch_norm:
            activation = self.cluster_bn(activation, training=is_training)
        else:
            activation += self.cluster_biases
        activation = self.activation(activation)
        activation = tf.reshape(activation, [-1, self.iterations, self.cluster_size])
        activation = model_util.FramePooling(activation, self.pooling_method)
        activation = tf.matmul(activation, self.hidden1_weights)
        if self.add_batch_norm:
            activation = self.hidden1_bn(activation, training=is_training)
        else:
            activation += self.hidden1_biases
        activation = self.activation(activation)
        return self.classifier.create_model(activation, vocab_size)


class LstmModel(models.BaseModel):
    """Stacked LSTMs over the frames; the top layer's state at each video's own length."""

    def __init__(
        self,
        vocab_size: int,
        lstm_cells: int = Hyperparameters.lstm_cells,
        lstm_layers: int = Hyperparameters.lstm_layers,
        video_level_classifier_model: str = Hyperparameters.video_level_classifier_model,
        **hyperparameters,
    ):
        """Creates the LSTM layers and the video-level classifier."""
        super().__init__(vocab_size)
        self.lstm_cells = lstm_cells
        self.lstm_layers = lstm_layers
        # No cuDNN kernel: the train, eval and serving steps are XLA-compiled, and XLA has
        # no cuDNN RNN op on GPUs. One attribute per layer: checkpoints do not see layers
        # held in a list.
        for layer in range(lstm_layers):
            setattr(
                self,
                f"lstm_{layer}",
                keras.layers.LSTM(
                    lstm_cells,
                    return_sequences=layer < lstm_layers - 1,
                    unit_forget_bias=True,
                    use_cudnn=False,
                ),
            )
        self.classifier = video_level_classifier(
            video_level_classifier_model, vocab_size, hyperparameters
        )

    def create_model(self, model_input, vocab_size, num_frames, **unused_params):
        """Returns the classifier's output on the top LSTM's final output.

        A mask built from num_frames makes each LSTM carry its state through the padding,
        so the final output is the one at the video's last real frame (the original's
        dynamic_rnn with sequence_length). The forget-gate bias starts at 1 (the original
        added 1 inside the gate; the gradients are the same).
        """
        mask = tf.sequence_mask(num_frames, tf.shape(model_input)[1])
        outputs = model_input
        for layer in range(self.lstm_layers):
            outputs = getattr(self, f"lstm_{layer}")(outputs, mask=mask)
        return self.classifier.create_model(outputs, vocab_size)


MODELS = {cls.__name__: cls for cls in (FrameLevelLogisticModel, DbofModel, LstmModel)}
