r"""Prints what readers.py reads from YouTube-8M TFRecord files.

A quick check that a data set is in the expected format before training on it: the
number of videos, the batch shapes and the label statistics, or one line naming the
first bad file or record.

Example:
  python describe_data.py --data_pattern='/tmp/yt8m_sample/video/train*.tfrecord' \
      --feature_names=mean_rgb,mean_audio --feature_sizes=1024,128
"""

import quiet_tensorflow  # noqa: F401 (first: hides TensorFlow's start-up noise)

# isort: split
import dataclasses

import numpy as np

import cli
import readers
from settings import Settings, setting


@dataclasses.dataclass(frozen=True)
class DescribeConfig(Settings):
    """What to describe, each a flag of describe_data.py."""

    data_pattern: str = setting("", "Glob of the TFRecord files to describe.")
    frame_features: bool = setting(False, "Frame-level SequenceExamples, not video-level.")
    feature_names: str = setting("mean_rgb", "Comma-separated feature names.")
    feature_sizes: str = setting("1024", "Comma-separated feature sizes.")
    id_feature: str = setting("id")
    num_classes: int = setting(3862)
    batch_size: int = setting(256, "Videos per batch read.")


def describe(reader: readers.BaseReader, data_pattern: str, batch_size: int) -> str:
    """Returns a multi-line summary of one pass over the data."""
    videos, label_counts, frame_counts, classes = 0, [], [], np.zeros(reader.num_classes)
    shapes = {}
    with reader.errors_explained(data_pattern):
        for batch in reader.get_dataset(data_pattern, batch_size):
            videos += int(batch["video_ids"].shape[0])
            labels = batch["labels"].numpy()
            label_counts.append(labels.sum(axis=1))
            classes += labels.sum(axis=0)
            frame_counts.append(batch["num_frames"].numpy())
            shapes = {key: (value.dtype.name, value.shape[1:]) for key, value in batch.items()}
    if not videos:
        return f"{data_pattern}: no records in {len(readers.list_files(data_pattern))} files"
    label_counts = np.concatenate(label_counts)
    frame_counts = np.concatenate(frame_counts)
    lines = [
        f"{data_pattern}: {videos} videos in {len(readers.list_files(data_pattern))} files",
        *(
            f"  {key}: {dtype} [batch{''.join(f', {d}' for d in shape)}]"
            for key, (dtype, shape) in shapes.items()
        ),
        f"  labels per video: mean {label_counts.mean():.2f}, min {label_counts.min():.0f}, "
        f"max {label_counts.max():.0f}; classes seen: {int((classes > 0).sum())} "
        f"of {reader.num_classes}",
        f"  num_frames: min {frame_counts.min()}, mean {frame_counts.mean():.1f}, "
        f"max {frame_counts.max()}",
    ]
    return "\n".join(lines)


def main(config: DescribeConfig) -> None:
    """Describes the files matching --data_pattern."""
    reader = readers.create_reader(
        config.frame_features,
        config.feature_names,
        config.feature_sizes,
        config.num_classes,
        id_feature=config.id_feature,
    )
    print(describe(reader, config.data_pattern, config.batch_size))


if __name__ == "__main__":
    cli.run(main, DescribeConfig)
