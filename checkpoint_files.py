"""A training directory's checkpoint files: the latest complete one, damage, leftovers.

TensorFlow writes checkpoint `model.ckpt-N` into `model.ckpt-N_temp/`, then moves its
files into place and lists it in the `checkpoint` file: a save killed or refused half
way leaves the temporary behind and the previous checkpoint the latest. train.py removes
such leftovers when it starts and when a save fails. A checkpoint damaged afterwards
(truncated, overwritten) is named with the previous complete one, which becomes the
latest once the damaged files are removed.
"""

import contextlib
import os
import re
from collections.abc import Iterator

import tensorflow as tf
from absl import logging

import atomic_write
from errors import UserError


def listed(train_dir: str) -> list[str]:
    """Returns the checkpoints the `checkpoint` file lists, oldest first."""
    state = tf.train.get_checkpoint_state(train_dir)
    return list(state.all_model_checkpoint_paths) if state else []


def latest(train_dir: str) -> str | None:
    """Returns the newest listed checkpoint whose files are there, or None.

    Newer listed ones whose files are missing (removed as damaged) are skipped, with a
    warning: tf.train.latest_checkpoint would return None there, and training would
    start over.
    """
    paths = listed(train_dir)
    for path in reversed(paths):
        if tf.io.gfile.exists(f"{path}.index"):
            if path != paths[-1]:
                logging.warning(
                    "The newest checkpoint listed in %s has no files; using %s.",
                    os.path.join(train_dir, "checkpoint"),
                    path,
                )
            return path
    return None


def keys(checkpoint_path: str) -> list[str]:
    """Returns the variable names a checkpoint holds.

    Raises:
      UserError: the checkpoint is damaged (see damage_explained).
    """
    with damage_explained(checkpoint_path):
        return [name for name, _ in tf.train.list_variables(checkpoint_path)]


@contextlib.contextmanager
def damage_explained(checkpoint_path: str) -> Iterator[None]:
    """Within `with`, a checkpoint that cannot be read is one UserError naming it.

    The message names the previous complete checkpoint of its directory, if any, and
    how to use it.
    """
    try:
        yield
    except (tf.errors.OpError, IndexError) as error:  # IndexError: a truncated data file.
        reason = str(error).split(" [Op:")[0].split("}} ")[-1]
        previous = previous_complete(checkpoint_path)
        advice = (
            f"the previous complete checkpoint is {previous}: remove {checkpoint_path}.* "
            "and run again to use it"
            if previous
            else "no earlier checkpoint there reads back whole (train.py --start_new_model "
            "starts over)"
        )
        raise UserError(
            f"Checkpoint {checkpoint_path} is damaged and cannot be read ({reason}); {advice}."
        ) from None


def previous_complete(checkpoint_path: str) -> str | None:
    """Returns the newest checkpoint listed before this one that reads back whole, or None."""
    paths = listed(os.path.dirname(checkpoint_path))
    if checkpoint_path not in paths:
        return None
    for path in reversed(paths[: paths.index(checkpoint_path)]):
        if reads_back(path):
            return path
    return None


def reads_back(checkpoint_path: str) -> bool:
    """True if every tensor of the checkpoint reads back, checksums checked."""
    try:
        reader = tf.train.load_checkpoint(checkpoint_path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, IndexError):
        return False
    return True


def remove_leftovers(train_dir: str) -> None:
    """Removes what interrupted saves left in train_dir: no checkpoint's files.

    That is every `model.ckpt-N_temp/`, every temporary `checkpoint` file, and every
    data file without its index (a save stopped while moving files into place).
    """
    if not tf.io.gfile.isdir(train_dir):
        return
    names = [name.rstrip("/") for name in tf.io.gfile.listdir(train_dir)]
    indexes = {name.removesuffix(".index") for name in names if name.endswith(".index")}
    for name in names:
        data_of = re.match(r"(.+)\.data-\d+-of-\d+$", name)
        if (
            re.fullmatch(r".+-\d+_temp", name)
            or re.fullmatch(r"checkpoint\.tmp[0-9a-f]+", name)
            or (data_of and data_of[1] not in indexes)
        ):
            leftover = os.path.join(train_dir, name)
            logging.info("Removing %s, left by an interrupted checkpoint save.", leftover)
            atomic_write.remove(leftover)


def remove_unlisted(checkpoint_path: str) -> None:
    """Removes the files of a checkpoint whose save failed, and that save's temporaries.

    A checkpoint is listed only once its files are complete, so an unlisted one is a
    failed save's, even where its files are all there.
    """
    train_dir = os.path.dirname(checkpoint_path)
    if checkpoint_path in listed(train_dir):
        return
    for path in tf.io.gfile.glob(f"{checkpoint_path}.*"):
        atomic_write.remove(path)
    remove_leftovers(train_dir)
