"""Imports TensorFlow without its start-up noise; every script imports this module first.

On a machine without a GPU, `import tensorflow` prints the oneDNN banner and its CUDA
probing ("Could not find cuda drivers" once per native library, before TensorFlow's
C++ logging reads TF_CPP_MIN_LOG_LEVEL; "failed call to cuInit" as an error, at the
first look for devices, which this module therefore takes). Unless the user set
TF_CPP_MIN_LOG_LEVEL, this sets it to 1 (TensorFlow's warnings and errors stay, its
INFO lines go) and drops those start-up lines from what the import writes to stderr;
everything else the import writes is passed on. With TF_CPP_MIN_LOG_LEVEL set, the
import is left alone.
"""

import os
import sys
import tempfile

START_UP_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "Unable to register cu",  # cuDNN/cuFFT/cuBLAS factories registered twice.
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
)


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow, its start-up lines on stderr filtered out."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        import tensorflow  # noqa: F401

        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    # A file, not a pipe: nothing reads while the import runs, and a pipe could fill.
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow

            # The CUDA probe ("failed call to cuInit") runs at the first device query.
            tensorflow.config.list_physical_devices()
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not is_noise(line)))
            sys.stderr.flush()


def is_noise(line: str) -> bool:
    """True for one of TensorFlow's start-up lines."""
    return any(noise in line for noise in START_UP_NOISE)


import_tensorflow_quietly()
