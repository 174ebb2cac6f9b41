"""The YouTube-8M features: their names and sizes, dequantization, and the model input.

Every model sees the same input: the features dequantized (frame-level uint8 frames,
padding rows set to 0.0) and L2-normalised over the concatenated features, per video or
per frame, as the original did.
"""

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from errors import UserError

# The quantization range of the YouTube-8M features (utils.Dequantize in the original).
MAX_QUANTIZED_VALUE = 2.0
MIN_QUANTIZED_VALUE = -2.0


def names_and_sizes(feature_names: str, feature_sizes: str) -> tuple[list[str], list[int]]:
    """Parses comma-separated feature names and sizes, e.g. "mean_rgb, mean_audio", "1024,128".

    Returns:
      (names, sizes) as lists of equal length; each name is stripped.

    Raises:
      UserError: the sizes are not integers or the two lists differ in length (the
        original only logged this and failed later in the reader).
    """
    names = [name.strip() for name in feature_names.split(",")]
    try:
        sizes = [int(size) for size in feature_sizes.split(",")]
    except ValueError:
        raise UserError(
            f"{{feature_sizes}}={feature_sizes!r}: expected comma-separated integers.",
            "feature_sizes",
        ) from None
    if len(names) != len(sizes):
        raise UserError(
            f"{{feature_names}}={feature_names!r} lists {len(names)} features but "
            f"{{feature_sizes}}={feature_sizes!r} lists {len(sizes)} sizes; they must match.",
            "feature_names",
            "feature_sizes",
        )
    return names, sizes


def dequantize(
    feat_vector, max_quantized_value=MAX_QUANTIZED_VALUE, min_quantized_value=MIN_QUANTIZED_VALUE
):
    """Maps uint8-quantized feature values back to floats.

    Faithful to the original, including the bias of range/512 (not range/510), so the
    values equal those the original starter code fed its models.

    Args:
      feat_vector: quantized values (a tensor or array of numbers in [0, 255]).
      max_quantized_value: the upper end of the quantization range.
      min_quantized_value: the lower end of the quantization range.

    Returns:
      The dequantized values, of feat_vector's (float) type.
    """
    assert max_quantized_value > min_quantized_value
    quantized_range = max_quantized_value - min_quantized_value
    scalar = quantized_range / 255.0
    bias = (quantized_range / 512.0) + min_quantized_value
    return feat_vector * scalar + bias


# dequantize() of every uint8 value, computed in float32 as the original's graph did, so a
# table lookup gives the original's values bit for bit.
_DEQUANTIZED_BYTE_VALUES = dequantize(np.arange(256, dtype=np.float32)).astype(np.float32)


@tf.function(jit_compile=True)
def dequantize_frames(
    quantized: Sequence[tf.Tensor], frame_counts: Sequence[tf.Tensor]
) -> tf.Tensor:
    """Dequantizes uint8 frame features and zeroes their padding, in one fused pass.

    Frame-level batches are about 1.4 MB of float32 per video, so the work is bound by
    memory traffic; XLA fuses the lookup, the padding mask and the concatenation into a
    single write of the output.

    Args:
      quantized: per feature, uint8 [B, T, feature_size] frames.
      frame_counts: per feature, int32 [B] number of real (non-padding) frames.

    Returns:
      float32 [B, T, sum(feature_sizes)]: dequantized frames, exactly 0.0 in padding rows.
    """
    table = tf.constant(_DEQUANTIZED_BYTE_VALUES)
    # One lookup over the concatenated bytes (measured 1.5x faster than one per feature
    # and a concatenation of floats), each column masked by its own feature's count.
    frames = tf.concat(quantized, axis=2)
    column_counts = tf.concat(
        [
            tf.repeat(count[:, tf.newaxis, tf.newaxis], part.shape[2], axis=2)
            for part, count in zip(quantized, frame_counts)
        ],
        axis=2,
    )
    real = tf.range(tf.shape(frames)[1])[tf.newaxis, :, tf.newaxis] < column_counts
    return tf.where(real, tf.gather(table, tf.cast(frames, tf.int32)), 0.0)


def dequantized_and_normalized(video_matrix: tf.Tensor, num_frames: tf.Tensor) -> tf.Tensor:
    """Returns what every model sees: the features dequantized, then L2-normalised.

    Frames that a reader left quantized (uint8) are dequantized first, with padding rows
    after num_frames set to 0.0, as the reader would have done. The norm is taken over
    the last axis (the concatenated features, per video or per frame), as the original
    did; zero padding stays zero.
    """
    if video_matrix.dtype == tf.uint8:
        video_matrix = dequantize_frames([video_matrix], [num_frames])
    return tf.nn.l2_normalize(video_matrix, axis=-1)
