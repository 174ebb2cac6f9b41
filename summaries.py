"""TensorBoard summaries with the original's tags, and the log lines that go with them."""

import numpy as np
import tensorflow as tf
from tensorboard.plugins.histogram import metadata as histogram_metadata

HISTOGRAM_BUCKETS = 30  # tf.summary.histogram's default.


def write_scalars(writer, global_step: int, values: dict) -> None:
    """Writes scalar summaries at global_step and flushes."""
    with writer.as_default(step=global_step):
        for tag, value in values.items():
            tf.summary.scalar(tag, value)
    writer.flush()


def write_histograms(writer, global_step: int, model, raw_input) -> None:
    """Writes the raw-input and per-variable histograms the original's Supervisor wrote."""
    with writer.as_default(step=global_step):
        write_histogram("model/input_raw", raw_input)
        for variable in model.trainable_variables:
            write_histogram(variable.path, variable)
    writer.flush()


def write_histogram(tag: str, values) -> None:
    """Writes the histogram tf.summary.histogram writes, without its memory cost.

    tf.summary.histogram counts through a float64 one-hot matrix of values × 30 buckets,
    240 bytes per value: 10 GB for a frame-level batch of 128 videos, 68 GB for the
    hidden weights of the 2017 winners' NetVLAD model. The same buckets counted with
    tf.histogram_fixed_width take 4 bytes per value.
    """
    summary_metadata = histogram_metadata.create_summary_metadata(display_name=tag, description="")
    tf.summary.write(tag, histogram_buckets(values), metadata=summary_metadata)


def histogram_buckets(values, bucket_count: int = HISTOGRAM_BUCKETS) -> tf.Tensor:
    """Returns float64 [bucket_count, 3]: each bucket's left edge, right edge and count.

    The buckets of tf.summary.histogram: equal widths from the minimum to the maximum,
    the maximum counted in the last; values all equal fall in the last bucket.
    """
    values = tf.reshape(tf.convert_to_tensor(values), [-1])
    if not values.dtype.is_floating:
        values = tf.cast(values, tf.float64)
    low, high = float(tf.reduce_min(values)), float(tf.reduce_max(values))
    if low == high:
        counts = np.zeros(bucket_count)
        counts[-1] = int(tf.size(values))
    else:
        counts = tf.histogram_fixed_width(
            values, tf.constant([low, high], values.dtype), bucket_count
        )
        counts = np.asarray(counts, np.float64)
    edges = np.linspace(low, high, bucket_count + 1)
    edges[-1] = high
    return tf.constant(np.stack([edges[:-1], edges[1:], counts], axis=1), tf.float64)


def add_global_step_summary(writer, global_step: int, info: dict, scope: str) -> str:
    """Writes one batch's GlobalStep/<scope>_* scalars; returns the original's log text."""
    values = {
        f"GlobalStep/{scope}_Hit@1": info["hit_at_one"],
        f"GlobalStep/{scope}_Perr": info["perr"],
        f"GlobalStep/{scope}_Loss": info["loss"],
    }
    if info.get("examples_per_second", -1) != -1:
        values[f"GlobalStep/{scope}_Example_Second"] = info["examples_per_second"]
    write_scalars(writer, global_step, values)
    return (
        f"global_step {global_step} | Batch Hit@1: {info['hit_at_one']:.3f} | "
        f"Batch PERR: {info['perr']:.3f} | Batch Loss: {info['loss']:.3f} | "
        f"Examples_per_sec: {info.get('examples_per_second', -1):.3f}"
    )


def add_epoch_summary(writer, global_step: int, info: dict, scope: str) -> str:
    """Writes the Epoch/<scope>_* scalars of a whole evaluation; returns the log text."""
    mean_ap = float(np.mean(info["aps"])) if info["aps"] else 0.0
    write_scalars(
        writer,
        global_step,
        {
            f"Epoch/{scope}_Avg_Hit@1": info["avg_hit_at_one"],
            f"Epoch/{scope}_Avg_Perr": info["avg_perr"],
            f"Epoch/{scope}_Avg_Loss": info["avg_loss"],
            f"Epoch/{scope}_MAP": mean_ap,
            f"Epoch/{scope}_GAP": info["gap"],
        },
    )
    # Faithful: the loss is formatted {:3f} (width 3, six decimals), as the original did.
    return (
        f"epoch/eval number {info['epoch_id']} | Avg_Hit@1: {info['avg_hit_at_one']:.3f} | "
        f"Avg_PERR: {info['avg_perr']:.3f} | MAP: {mean_ap:.3f} | GAP: {info['gap']:.3f} | "
        f"Avg_Loss: {info['avg_loss']:3f} | num_classes: {len(info['aps'])}"
    )
