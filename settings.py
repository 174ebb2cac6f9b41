"""Settings dataclasses, and the command-line flags derived from them.

Each script's settings are one frozen dataclass whose fields carry their default and help
text, so both are written once: the script defines its flags from the dataclass and
builds the dataclass from the parsed flags, and a test or notebook builds it directly.
Settings that several scripts share (`train_dir`, `batch_size`, ...) keep one help text
here; each script gives its own default, as the original's scripts did. A numeric setting
may carry the Range of values it accepts; the dataclass checks it when built (Settings).
"""

import dataclasses
import sys
import types
from typing import Any

from absl import flags

from errors import UserError


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric setting accepts: from low to high, either end open or absent."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded
    high_open: bool = False

    def holds(self, value: float) -> bool:
        """True if the value is in the range."""
        above = self.low is None or value > self.low or (value == self.low and not self.low_open)
        below = (
            self.high is None or value < self.high or (value == self.high and not self.high_open)
        )
        return above and below

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            opening = "(" if self.low_open else "["
            closing = ")" if self.high_open else "]"
            return f"in {opening}{self.low}, {self.high}{closing}"
        if self.low is not None:
            return f"{'above' if self.low_open else 'at least'} {self.low}"
        return f"{'below' if self.high_open else 'at most'} {self.high}"


AT_LEAST_ONE = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
FRACTION = Range(0, 1, high_open=True)  # [0, 1): a rate or a decay

# The help of the settings that several scripts share, by name.
SHARED_HELP = {
    "train_dir": "Directory of the checkpoints, summaries, model_flags.json and inference model.",
    "batch_size": "Videos per batch (per GPU when training).",
    "num_readers": "Files read at once in training (evaluation reads in order).",
    "segment_labels": (
        "Work on the rated 5-frame segments of the 2019 segment-rated frame-level files "
        "instead of on whole videos."
    ),
    "feature_names": "Comma-separated names of the features to use.",
    "feature_sizes": "Comma-separated sizes of those features.",
    "frame_features": (
        "Read frame-level SequenceExamples (rgb, audio per frame) instead of video-level Examples."
    ),
    "id_feature": "Key of the video id in the records: 'id' (2018 on) or 'video_id' (2017).",
    "top_k": "Predictions per video kept for GAP and mAP.",
    "num_classes": "Size of the label vocabulary.",
}
# The ranges of the shared numeric settings, by name.
SHARED_RANGES = {
    "batch_size": AT_LEAST_ONE,
    "num_readers": AT_LEAST_ONE,
    "top_k": AT_LEAST_ONE,
    "num_classes": AT_LEAST_ONE,
}

_DEFINERS = {
    bool: flags.DEFINE_bool,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    str: flags.DEFINE_string,
    list: flags.DEFINE_list,
}


def setting(default: Any, help: str | None = None, valid: Range | None = None) -> Any:
    """Returns a dataclass field that is also a flag.

    Args:
      default: the flag's default.
      help: its help text; None takes SHARED_HELP's.
      valid: the values a numeric setting accepts; None takes SHARED_RANGES' (if any).
    """
    metadata = {"help": help, "valid": valid}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class Settings:
    """Base of the settings dataclasses: building one checks each numeric setting's range.

    Raises:
      UserError: naming the first setting out of its range, and the range.
    """

    def __post_init__(self):
        for field in flag_fields(type(self)):
            valid = valid_range(field)
            value = getattr(self, field.name)
            if valid is not None and value is not None and not valid.holds(value):
                raise UserError(
                    f"{{{field.name}}}={value} is out of range: it must be {valid}.", field.name
                )


def valid_range(field: dataclasses.Field) -> Range | None:
    """Returns the values a setting accepts, or None for any."""
    return field.metadata.get("valid") or SHARED_RANGES.get(field.name)


def flag_fields(settings_class: type) -> list[dataclasses.Field]:
    """Returns the fields of a settings dataclass that are command-line flags."""
    return [field for field in dataclasses.fields(settings_class) if "help" in field.metadata]


def define_flags(settings_class: type, module_name: str | None = None) -> None:
    """Defines one flag per setting of the dataclass, with its default and help.

    Args:
      settings_class: a dataclass whose flag fields were made by `setting`.
      module_name: the module the flags are listed under in --help (default: the
        running script, as absl names it).
    """
    module_name = module_name or sys.argv[0]
    for field in flag_fields(settings_class):
        kind = field.type
        if isinstance(kind, types.UnionType):  # `int | None`: an optional integer
            kind = next(member for member in kind.__args__ if member is not type(None))
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        help_text = field.metadata["help"] or SHARED_HELP[field.name]
        if valid_range(field) is not None:
            help_text += f" ({valid_range(field)})"
        define = _DEFINERS[getattr(kind, "__origin__", kind)]
        define(field.name, default, help_text, module_name=module_name)


def from_flags(settings_class: type, **values: Any) -> Any:
    """Returns the settings dataclass of the parsed flags (and of the values given)."""
    from_command_line = {
        field.name: flags.FLAGS[field.name].value for field in flag_fields(settings_class)
    }
    return settings_class(**from_command_line, **values)
