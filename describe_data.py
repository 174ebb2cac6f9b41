r"""Prints what readers.py reads from YouTube-8M TFRecord files.

A quick check that a data set is in the expected format before training on it: the
number of videos, the batch shapes and the label statistics, or one line naming the
first bad file or record.

Example:
  python describe_data.py --data_pattern='/tmp/yt8m_sample/video/train*.tfrecord' \
      --feature_names=mean_rgb,mean_audio --feature_sizes=1024,128
"""

import numpy as np
from absl import app, flags

import readers
import utils

FLAGS = flags.FLAGS
flags.DEFINE_string("data_pattern", "", "Glob of the TFRecord files to describe.")
flags.DEFINE_bool("frame_features", False, "Frame-level SequenceExamples, not video-level.")
flags.DEFINE_string("feature_names", "mean_rgb", "Comma-separated feature names.")
flags.DEFINE_string("feature_sizes", "1024", "Comma-separated feature sizes.")
flags.DEFINE_integer("num_classes", 3862, "Size of the label vocabulary.")
flags.DEFINE_integer("batch_size", 256, "Videos per batch read.")


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


def main(argv):
    """Describes the files matching --data_pattern."""
    del argv
    reader = readers.create_reader(
        FLAGS.frame_features, FLAGS.feature_names, FLAGS.feature_sizes, FLAGS.num_classes
    )
    print(describe(reader, FLAGS.data_pattern, FLAGS.batch_size))


if __name__ == "__main__":
    app.run(utils.exit_on_user_error(main))
