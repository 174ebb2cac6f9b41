"""Loss functions for multi-label video classification, chosen by --label_loss.

Each loss has the original starter code's formula: `calculate_loss(predictions, labels,
**unused_params)` returns a scalar, the mean over the batch of a per-video sum over
classes. Regularization is added by train.py, not here.
"""

import tensorflow as tf


class BaseLoss:
    """Inherit from this class when implementing new losses."""

    # Whether calculate_loss takes label_weights (segment training weights each term).
    takes_label_weights = False

    def calculate_loss(self, unused_predictions, unused_labels, **unused_params) -> tf.Tensor:
        """Returns the scalar loss of a batch of predictions against its labels.

        Args:
          unused_predictions: float [batch_size, num_classes] model outputs.
          unused_labels: [batch_size, num_classes] 0/1 (or score) labels of any type.
          **unused_params: loss-specific options; others are ignored.
        """
        raise NotImplementedError()


class CrossEntropyLoss(BaseLoss):
    """Binary cross entropy summed over classes, for probabilities in [0, 1]."""

    takes_label_weights = True

    def calculate_loss(self, predictions, labels, label_weights=None, **unused_params):
        """Returns mean over videos of sum over classes of -[y log(p+ε) + (1-y) log(1-p+ε)].

        Args:
          predictions: float [batch_size, num_classes] probabilities.
          labels: [batch_size, num_classes] labels.
          label_weights: optional [batch_size, num_classes] weights of each term.
        """
        epsilon = 1e-5
        float_labels = tf.cast(labels, tf.float32)
        cross_entropy_loss = float_labels * tf.math.log(predictions + epsilon) + (
            1 - float_labels
        ) * tf.math.log(1 - predictions + epsilon)
        cross_entropy_loss = tf.negative(cross_entropy_loss)
        if label_weights is not None:
            cross_entropy_loss *= label_weights
        return tf.reduce_mean(tf.reduce_sum(cross_entropy_loss, 1))


class HingeLoss(BaseLoss):
    """Hinge loss summed over classes, for predictions expected in [-1, 1]."""

    takes_label_weights = True

    def calculate_loss(self, predictions, labels, b=1.0, label_weights=None, **unused_params):
        """Returns mean over videos of sum over classes of max(0, b - (2y - 1) p).

        Args:
          predictions: float [batch_size, num_classes] scores.
          labels: [batch_size, num_classes] 0/1 labels.
          b: the margin.
          label_weights: optional [batch_size, num_classes] weights of each term (the
            original had none; added for segment training).
        """
        float_labels = tf.cast(labels, tf.float32)
        sign_labels = 2 * float_labels - 1
        hinge_loss = tf.maximum(0.0, b - sign_labels * predictions)
        if label_weights is not None:
            hinge_loss *= label_weights
        return tf.reduce_mean(tf.reduce_sum(hinge_loss, 1))


class SoftmaxLoss(BaseLoss):
    """Softmax cross entropy against L1-normalised labels.

    Faithful: the model outputs (sigmoid probabilities for every model here) are treated
    as logits, as in the original.
    """

    def calculate_loss(self, predictions, labels, **unused_params):
        """Returns mean over videos of -Σ_c (y_c / max(Σy, ε)) log softmax(p)_c.

        Args:
          predictions: float [batch_size, num_classes], used as logits.
          labels: [batch_size, num_classes] labels.
        """
        epsilon = 10e-8
        float_labels = tf.cast(labels, tf.float32)
        label_rowsum = tf.maximum(tf.reduce_sum(float_labels, 1, keepdims=True), epsilon)
        norm_float_labels = float_labels / label_rowsum
        softmax_outputs = tf.nn.softmax(predictions)
        softmax_loss = tf.negative(
            tf.reduce_sum(norm_float_labels * tf.math.log(softmax_outputs), 1)
        )
        return tf.reduce_mean(softmax_loss)


LOSSES = {cls.__name__: cls for cls in (CrossEntropyLoss, HingeLoss, SoftmaxLoss)}
