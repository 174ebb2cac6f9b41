"""Outputs written under a temporary name and renamed when complete, never half-written.

A run killed while writing leaves `<output>.tmp<pid>` (or, between the two renames of a
directory, `<output>.old<pid>`) beside the output; the next write of that output removes
such leftovers of processes no longer running, after putting back an `.old` copy whose
output is missing. A file system that refuses a write (full disk, no permission) is one
UserError naming the output.
"""

import contextlib
import os
import re
from collections.abc import Iterator

import tensorflow as tf
from absl import logging

import errors
from errors import UserError


@contextlib.contextmanager
def replaced_atomically(path: str) -> Iterator[str]:
    """Yields a temporary path to write a file or directory to; then moves it to `path`.

    On success the temporary replaces whatever was at `path` (a directory is swapped in
    with two renames, so `path` always holds a complete old or new version); on an
    exception the temporary is removed and `path` is left as it was.

    Raises:
      UserError: the file system refused a write to the temporary or to `path`.
    """
    path = path.rstrip("/")
    remove_leftovers(path)
    temporary = f"{path}.tmp{os.getpid()}"
    with write_failures_explained(path, "nothing was written there"):
        try:
            yield temporary
            if tf.io.gfile.isdir(temporary):
                previous = f"{path}.old{os.getpid()}"
                if tf.io.gfile.exists(path):
                    tf.io.gfile.rename(path, previous)
                tf.io.gfile.rename(temporary, path)
                remove(previous)
            else:
                tf.io.gfile.rename(temporary, path, overwrite=True)
        finally:
            remove(temporary)


@contextlib.contextmanager
def write_failures_explained(
    path: str, consequence: str, output: str | None = None
) -> Iterator[None]:
    """Within `with`, a file system refusing a write under `path` is one UserError.

    Args:
      path: where the writes go: a file, or a directory of files. Errors naming another
        place pass through as they are, unless it is a directory above `path`.
      consequence: what the user is told it means for their outputs.
      output: what the message says could not be written; default `path`.
    """
    try:
        yield
    except (tf.errors.OpError, OSError) as error:
        problem = errors.storage_problem(error)
        if problem is None or not about_path(str(error), path):
            raise
        raise UserError(f"Cannot write {output or path}: {problem}; {consequence}.") from None


def about_path(text: str, path: str) -> bool:
    """True if an error's text names `path`, a file under it or a directory above it.

    Also for a text naming no file at all: TensorFlow's summary writer says only "Not a
    directory".
    """
    text = text.split("}} ")[-1]  # Without TensorFlow's "{{function_node .../device:CPU:0}}".
    if "/" not in text:
        return True
    while path not in ("", "/", "."):
        if path in text:
            return True
        path = os.path.dirname(path.rstrip("/"))
    return False


def remove_leftovers(path: str) -> None:
    """Removes the temporaries of killed writes of `path`; restores an orphaned old copy."""
    pattern = re.compile(re.escape(os.path.basename(path)) + r"\.(tmp|old)(\d+)$")
    directory = os.path.dirname(path) or "."
    if not tf.io.gfile.isdir(directory):
        return
    for name in sorted(tf.io.gfile.listdir(directory)):
        match = pattern.match(name.rstrip("/"))
        if not match or another_process_running(int(match[2])):
            continue
        leftover = os.path.join(directory, match[0])
        if match[1] == "old" and not tf.io.gfile.exists(path):
            logging.warning("Restoring %s from %s, left by an interrupted write.", path, leftover)
            tf.io.gfile.rename(leftover, path)
        else:
            logging.info("Removing %s, left by an interrupted write.", leftover)
            remove(leftover)


def another_process_running(pid: int) -> bool:
    """True if a process other than this one runs with this id on this machine."""
    if pid == os.getpid():  # A killed run's id, reused: this process has written nothing yet.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Another user's process.
        return True
    return True


def remove(path: str) -> None:
    """Removes a file or directory tree if it exists."""
    if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def write_text(path: str, text: str) -> None:
    """Writes a text file atomically."""
    with replaced_atomically(path) as temporary, tf.io.gfile.GFile(temporary, "w") as file:
        file.write(text)
