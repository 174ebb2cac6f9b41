"""Frame sampling and pooling helpers shared by the frame-level models (TF ops)."""

import tensorflow as tf


def SampleRandomSequence(model_input, num_frames, num_samples):
    """Samples a random contiguous sequence of frames from each video.

    Frames repeat (the last real one) when a video is shorter than num_samples.

    Args:
      model_input: float [batch_size, max_frames, feature_size].
      num_frames: int [batch_size, 1]: each video's number of real frames.
      num_samples: how many frames to take.

    Returns:
      float [batch_size, num_samples, feature_size].
    """
    batch_size = tf.shape(model_input)[0]
    num_frames = tf.cast(num_frames, tf.int32)
    frame_index_offset = tf.tile(tf.expand_dims(tf.range(num_samples), 0), [batch_size, 1])
    max_start_frame_index = tf.maximum(num_frames - num_samples, 0)
    start_frame_index = tf.cast(
        tf.random.uniform([batch_size, 1]) * tf.cast(max_start_frame_index + 1, tf.float32),
        tf.int32,
    )
    # The original took min(start + j, num_frames - 1), which is -1 for a video without
    # frames and crashes the gather; such a video reads its (zero) first row instead.
    last_frame_index = tf.maximum(num_frames - 1, 0)
    frame_index = tf.minimum(start_frame_index + frame_index_offset, last_frame_index)
    return gather_frames(model_input, frame_index)


def SampleRandomFrames(model_input, num_frames, num_samples):
    """Samples num_samples frames uniformly, with replacement, from each video's real frames.

    Args:
      model_input: float [batch_size, max_frames, feature_size].
      num_frames: int [batch_size, 1]: each video's number of real frames.
      num_samples: how many frames to take.

    Returns:
      float [batch_size, num_samples, feature_size].
    """
    batch_size = tf.shape(model_input)[0]
    frame_index = tf.cast(
        tf.random.uniform([batch_size, num_samples])
        * tf.tile(tf.cast(num_frames, tf.float32), [1, num_samples]),
        tf.int32,
    )
    return gather_frames(model_input, frame_index)


def gather_frames(model_input, frame_index):
    """Returns model_input[b, frame_index[b, j]] as [batch_size, num_samples, features]."""
    return tf.gather(model_input, frame_index, batch_dims=1)


def FramePooling(frames, method):
    """Pools over the frames of each video.

    Args:
      frames: float [batch_size, num_frames, feature_size].
      method: "average", "max", or "none" (keep every frame as its own row; the original's
        "none" called a missing method and crashed).

    Returns:
      float [batch_size, feature_size], or [batch_size * num_frames, feature_size] for
      "none".

    Raises:
      ValueError: an unknown method.
    """
    if method == "average":
        return tf.reduce_mean(frames, 1)
    if method == "max":
        return tf.reduce_max(frames, 1)
    if method == "none":
        return tf.reshape(frames, [-1, frames.shape[2]])
    raise ValueError(f"Unrecognized pooling method: {method}")
