"""Outputs written under a temporary name and renamed when complete, never half-written."""

import contextlib
import os
from collections.abc import Iterator

import tensorflow as tf


@contextlib.contextmanager
def replaced_atomically(path: str) -> Iterator[str]:
    """Yields a temporary path to write a file or directory to; then moves it to `path`.

    On success the temporary replaces whatever was at `path` (a directory is swapped in
    with two renames, so `path` always holds a complete old or new version); on an
    exception the temporary is removed and `path` is left as it was.
    """
    path = path.rstrip("/")
    temporary = f"{path}.tmp{os.getpid()}"
    remove(temporary)
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
