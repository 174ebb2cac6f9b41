"""Small plumbing shared by the scripts and the library modules.

Feature-flag parsing, dequantization and the one-line error that a user-caused problem
turns into at the command-line edge.
"""

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from absl import flags, logging

# The quantization range of the YouTube-8M features (utils.Dequantize in the original).
MAX_QUANTIZED_VALUE = 2.0
MIN_QUANTIZED_VALUE = -2.0


class UserError(Exception):
    """A problem the user can fix (bad flag, missing or malformed file).

    The scripts print its message as one line and exit with status 1, without a traceback.
    """


MODEL_FLAGS_FILE = "model_flags.json"


def define_common_flags(*, train_dir: str, batch_size: int, num_readers: int) -> None:
    """Defines the flags that train.py, eval.py and inference.py share.

    The defaults differ between the scripts, as in the original, so each passes its own.
    """
    flags.DEFINE_string(
        "train_dir",
        train_dir,
        "Directory of the checkpoints, summaries, model_flags.json and inference model.",
    )
    flags.DEFINE_integer("batch_size", batch_size, "Videos per batch (per GPU when training).")
    flags.DEFINE_integer(
        "num_readers", num_readers, "Files read at once in training (evaluation reads in order)."
    )
    flags.DEFINE_bool(
        "segment_labels",
        False,
        "Use the 2019 segment-rated labels (frame-level data only; not supported yet).",
    )


def model_flags_path(train_dir: str) -> str:
    """Returns the path of a training directory's model_flags.json."""
    return os.path.join(train_dir, MODEL_FLAGS_FILE)


def write_or_check_model_flags(train_dir: str, model_flags: dict) -> None:
    """Writes model_flags.json, or exits with the original's message if it differs.

    Args:
      train_dir: the training directory.
      model_flags: the five original keys (model, feature_sizes, feature_names,
        frame_features, label_loss) plus the model hyperparameter flags.
    """
    path = model_flags_path(train_dir)
    if tf.io.gfile.exists(path):
        existing = load_json(path)
        if existing != model_flags:
            logging.error(
                "Model flags do not match existing file %s. Please delete the file, change "
                "--train_dir, or pass flag --start_new_model",
                path,
            )
            logging.error("Ran model with flags: %s", json.dumps(model_flags))
            logging.error("Previously ran with flags: %s", json.dumps(existing))
            sys.exit(1)
        return
    write_text_atomically(path, json.dumps(model_flags))


def read_model_flags(train_dir: str, hint: str) -> dict:
    """Returns the parsed model_flags.json of a training directory.

    Raises:
      UserError: the file is missing: "Cannot find file <path>. <hint>".
    """
    path = model_flags_path(train_dir)
    if not tf.io.gfile.exists(path):
        raise UserError(f"Cannot find file {path}. {hint}")
    return load_json(path)


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


def write_text_atomically(path: str, text: str) -> None:
    """Writes a text file under a temporary name and renames it, so it is never half-written."""
    temporary = f"{path}.tmp{os.getpid()}"
    with tf.io.gfile.GFile(temporary, "w") as file:
        file.write(text)
    tf.io.gfile.rename(temporary, path, overwrite=True)


def class_by_name(name: str, candidates: dict[str, type], flag: str) -> type:
    """Returns candidates[name], or raises a UserError naming the flag and the valid names.

    The original raised a bare StopIteration for an unknown --model, --label_loss or
    --optimizer.
    """
    if name not in candidates:
        raise UserError(f"--{flag}={name!r} is not known; choose one of {', '.join(candidates)}.")
    return candidates[name]


def feature_names_and_sizes(feature_names: str, feature_sizes: str) -> tuple[list[str], list[int]]:
    """Parses the comma-separated --feature_names and --feature_sizes flags.

    Args:
      feature_names: e.g. "mean_rgb, mean_audio"; each name is stripped.
      feature_sizes: e.g. "1024,128".

    Returns:
      (names, sizes) as lists of equal length.

    Raises:
      UserError: the sizes are not integers or the two lists differ in length (the
        original only logged this and failed later in the reader).
    """
    names = [name.strip() for name in feature_names.split(",")]
    try:
        sizes = [int(size) for size in feature_sizes.split(",")]
    except ValueError:
        raise UserError(
            f"--feature_sizes={feature_sizes!r}: expected comma-separated integers."
        ) from None
    if len(names) != len(sizes):
        raise UserError(
            f"--feature_names={feature_names!r} lists {len(names)} features but "
            f"--feature_sizes={feature_sizes!r} lists {len(sizes)} sizes; they must match."
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
    columns = []
    for frames, count in zip(quantized, frame_counts):
        real = tf.sequence_mask(count, tf.shape(frames)[1])[:, :, tf.newaxis]
        columns.append(tf.where(real, tf.gather(table, tf.cast(frames, tf.int32)), 0.0))
    return tf.concat(columns, axis=2)


def model_input(video_matrix: tf.Tensor, num_frames: tf.Tensor) -> tf.Tensor:
    """Returns what every model sees: the features L2-normalised over the last axis.

    Frames that a reader left quantized (uint8) are dequantized first, with padding rows
    after num_frames set to 0.0, as the reader would have done. The norm is taken over
    the concatenated features, per video or per frame, as the original did; zero padding
    stays zero.
    """
    if video_matrix.dtype == tf.uint8:
        video_matrix = dequantize_frames([video_matrix], [num_frames])
    return tf.nn.l2_normalize(video_matrix, axis=-1)


def add_global_step_summary(writer, global_step: int, info: dict, scope: str) -> str:
    """Writes one batch's GlobalStep/<scope>_* scalars; returns the original's log text."""
    with writer.as_default(step=global_step):
        tf.summary.scalar(f"GlobalStep/{scope}_Hit@1", info["hit_at_one"])
        tf.summary.scalar(f"GlobalStep/{scope}_Perr", info["perr"])
        tf.summary.scalar(f"GlobalStep/{scope}_Loss", info["loss"])
        if info.get("examples_per_second", -1) != -1:
            tf.summary.scalar(f"GlobalStep/{scope}_Example_Second", info["examples_per_second"])
    writer.flush()
    return (
        f"global_step {global_step} | Batch Hit@1: {info['hit_at_one']:.3f} | "
        f"Batch PERR: {info['perr']:.3f} | Batch Loss: {info['loss']:.3f} | "
        f"Examples_per_sec: {info.get('examples_per_second', -1):.3f}"
    )


def add_epoch_summary(writer, global_step: int, info: dict, scope: str) -> str:
    """Writes the Epoch/<scope>_* scalars of a whole evaluation; returns the log text."""
    mean_ap = float(np.mean(info["aps"])) if info["aps"] else 0.0
    with writer.as_default(step=global_step):
        tf.summary.scalar(f"Epoch/{scope}_Avg_Hit@1", info["avg_hit_at_one"])
        tf.summary.scalar(f"Epoch/{scope}_Avg_Perr", info["avg_perr"])
        tf.summary.scalar(f"Epoch/{scope}_Avg_Loss", info["avg_loss"])
        tf.summary.scalar(f"Epoch/{scope}_MAP", mean_ap)
        tf.summary.scalar(f"Epoch/{scope}_GAP", info["gap"])
    writer.flush()
    # Faithful: the loss is formatted {:3f} (width 3, six decimals), as the original did.
    return (
        f"epoch/eval number {info['epoch_id']} | Avg_Hit@1: {info['avg_hit_at_one']:.3f} | "
        f"Avg_PERR: {info['avg_perr']:.3f} | MAP: {mean_ap:.3f} | GAP: {info['gap']:.3f} | "
        f"Avg_Loss: {info['avg_loss']:3f} | num_classes: {len(info['aps'])}"
    )


def exit_on_user_error(main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
    """Wraps an absl `main` so that a UserError prints one line and exits with status 1."""

    @functools.wraps(main)
    def main_with_one_line_errors(argv: list[str]) -> None:
        try:
            main(argv)
        except UserError as error:
            print(f"ERROR: {error}", file=sys.stderr, flush=True)
            sys.exit(1)

    return main_with_one_line_errors
