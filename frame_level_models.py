"""Models that classify a video from its frame-level features [batch, max_frames, features].

Train them with --frame_features --feature_names=rgb,audio --feature_sizes=1024,128.
"""

import math

import keras
import tensorflow as tf
from absl import flags

import model_util
import models
import utils
import video_level_models

flags.DEFINE_integer("iterations", 30, "Number of frames per batch for DBoF.")
flags.DEFINE_bool("dbof_add_batch_norm", True, "Adds batch normalization to the DBoF model.")
flags.DEFINE_bool(
    "sample_random_frames",
    True,
    "If true samples random frames (for frame level models). If false, a random sequence "
    "of frames is sampled instead.",
)
flags.DEFINE_integer("dbof_cluster_size", 8192, "Number of units in the DBoF cluster layer.")
flags.DEFINE_integer("dbof_hidden_size", 1024, "Number of units in the DBoF hidden layer.")
flags.DEFINE_string(
    "dbof_pooling_method",
    "max",
    "The pooling method used in the DBoF cluster layer. Choices are 'average' and 'max'.",
)
flags.DEFINE_string(
    "dbof_activation",
    "sigmoid",
    "The nonlinear activation method for cluster and hidden dense layer, e.g., sigmoid, relu6.",
)
flags.DEFINE_string(
    "video_level_classifier_model",
    "MoeModel",
    "Some Frame-Level models can be decomposed into a generalized pooling operation "
    "followed by a classifier layer",
)
flags.DEFINE_integer("lstm_cells", 1024, "Number of LSTM cells.")
flags.DEFINE_integer("lstm_layers", 2, "Number of LSTM layers.")

# The settings of slim.batch_norm, which the original used. Synchronized: with several
# replicas, batch statistics (and so the moving averages) cover the global batch, so every
# replica holds the same moving statistics (the original's towers updated shared ones).
BATCH_NORM = dict(momentum=0.999, epsilon=1e-3, center=True, scale=True, synchronized=True)


def video_level_classifier(name: str, vocab_size: int, hyperparameters: dict) -> models.BaseModel:
    """Returns the video-level model (e.g. MoeModel) that classifies the pooled frames."""
    classes = {
        class_name: cls
        for class_name, cls in models.model_classes().items()
        if cls.__module__ == video_level_models.__name__
    }
    cls = utils.class_by_name(name, classes, "video_level_classifier_model")
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
        num_frames = tf.cast(tf.expand_dims(num_frames, 1), tf.float32)
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
        iterations: int = 30,
        dbof_add_batch_norm: bool = True,
        sample_random_frames: bool = True,
        dbof_cluster_size: int = 8192,
        dbof_hidden_size: int = 1024,
        dbof_pooling_method: str = "max",
        dbof_activation: str = "sigmoid",
        video_level_classifier_model: str = "MoeModel",
        **hyperparameters,
    ):
        """Creates the layers; the feature size is taken from the first input."""
        super().__init__(vocab_size)
        if dbof_activation not in ("sigmoid", "relu6"):
            raise utils.UserError(
                f"--dbof_activation={dbof_activation!r}: use 'sigmoid' or 'relu6'."
            )
        if dbof_pooling_method not in ("max", "average"):
            raise utils.UserError(
                f"--dbof_pooling_method={dbof_pooling_method!r}: use 'max' or 'average'."
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
        lstm_cells: int = 1024,
        lstm_layers: int = 2,
        video_level_classifier_model: str = "MoeModel",
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
