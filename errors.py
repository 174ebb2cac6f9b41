"""The exception for problems a user can fix: a bad setting, a missing or malformed file.

Library modules raise it as an ordinary exception (it is a ValueError) and never exit;
the scripts turn it into one `ERROR:` line and exit status 1 (cli.py). A message names
the settings it concerns as `{name}`: library code reads the bare name (`feature_sizes`),
the command line reads the flag (`--feature_sizes`).
"""

import re
from collections.abc import Mapping
from typing import TypeVar

Choice = TypeVar("Choice")


class UserError(ValueError):
    """A problem the user can fix; `{name}` in the message stands for setting `name`.

    `details` are further lines that go with the message; the command line logs such an
    error as the original logged it (message and details as error log lines).
    """

    details: tuple[str, ...] = ()

    def __init__(self, message: str, *settings: str):
        super().__init__(message)
        self.message = message
        self.settings = settings

    def __str__(self) -> str:
        return self.with_settings_named("")

    def with_settings_named(self, prefix: str) -> str:
        """Returns the message with each setting written as prefix + its name."""
        text = self.message
        for name in self.settings:
            text = text.replace(f"{{{name}}}", prefix + name)
        return text


def chosen(name: str, choices: Mapping[str, Choice], setting: str) -> Choice:
    """Returns choices[name], or raises a UserError that lists the valid names.

    The original raised a bare StopIteration for an unknown --model, --label_loss or
    --optimizer.
    """
    if name not in choices:
        raise UserError(
            f"{{{setting}}}={name!r} is not known; choose one of {', '.join(choices)}.", setting
        )
    return choices[name]


# What the operating system says when a file system refuses a write, and what it means.
STORAGE_PROBLEMS = {
    "No space left on device": "the disk is full",
    "Disk quota exceeded": "the disk quota is used up",
    "Read-only file system": "the file system is read-only",
    "Permission denied": "permission is denied",
    "File too large": "the file is larger than the file system allows",
    "Not a directory": "a part of the path is a file, not a directory",
}


def storage_problem(error: Exception) -> str | None:
    """Returns what went wrong if the error is a file system refusing a write, else None."""
    text = str(error)
    not_a_directory = re.search(r"(\S+) is not a directory", text)
    if not_a_directory:  # TensorFlow's words: they name the file in the way.
        return f"{not_a_directory[1]} is a file, not a directory"
    return next((meaning for cause, meaning in STORAGE_PROBLEMS.items() if cause in text), None)
