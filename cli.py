"""The command-line edge shared by the scripts: settings as flags, one-line errors, exit codes.

Library modules raise `errors.UserError`; only here does it become one `ERROR:` line
naming the flags (`--feature_sizes`) and exit status 1, without a traceback.
"""

import atexit
import logging as python_logging
import os
import sys
from collections.abc import Callable

from absl import app, logging

import readers
import settings
from errors import UserError


def run(
    main: Callable[..., None],
    settings_class: type,
    *flag_tables: type,
    with_arguments: bool = False,
) -> None:
    """Runs `main(settings)` as an absl program, with one-line errors.

    Args:
      main: the script's job, called with the settings dataclass of the parsed flags
        (and the positional command-line arguments, with_arguments).
      settings_class: the script's settings dataclass; its fields become flags.
      *flag_tables: further settings dataclasses defined as flags under their own
        modules (the model hyperparameters), read by `main` itself.
      with_arguments: pass the positional arguments to main; otherwise there are none.
    """
    settings.define_flags(settings_class)
    for table in flag_tables:
        settings.define_flags(table, module_name=table.__module__)

    def main_with_one_line_errors(argv: list[str]) -> None:
        arguments = (argv[1:],) if with_arguments else ()
        try:
            main(settings.from_flags(settings_class), *arguments)
        except UserError as error:
            if error.details:
                for line in (one_line(error), *error.details):
                    logging.error(line)
            else:
                print(f"ERROR: {one_line(error)}", file=sys.stderr, flush=True)
            exit_now(1)
        exit_now(0)

    app.run(main_with_one_line_errors)


def exit_now(status: int) -> None:
    """Ends the process once its output is flushed, skipping the interpreter's teardown.

    Every output is closed by then (files, checkpoints and summaries are flushed where
    they are written). What is left is Python's and TensorFlow's teardown: freeing every
    module and stopping input pipelines mid-read: 0.7-1 s after a bare `import tensorflow`
    on a 2-core machine, and seen far longer with training data left unread.
    """
    atexit._run_exitfuncs()  # What sys.exit would run first (a benchmark's clean-up).
    python_logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def one_line(error: UserError) -> str:
    """Returns the error's message with its settings written as flags."""
    return error.with_settings_named("--")


def require_files(data_pattern: str, unspecified: str, no_match: str | None = None) -> list[str]:
    """Returns the files matching a data-pattern flag, or fails with the original's words.

    Args:
      data_pattern: the flag's value, a glob on any tf.io.gfile file system.
      unspecified: the error when the flag is empty.
      no_match: the error when no file matches (default: the reader's).
    """
    if not data_pattern:
        raise UserError(unspecified)
    try:
        return readers.list_files(data_pattern)
    except UserError:
        if no_match is None:
            raise
        raise UserError(no_match) from None
