"""Readers: a YouTube-8M TFRecord file pattern in, a tf.data.Dataset of batches out.

Each batch is a dict:
  video_ids     string  [B]
  video_matrix  float32 [B, D] (video level) or [B, max_frames, D] (frame level; uint8
                with quantized_frames=True, dequantized in the model step by
                features.dequantized_and_normalized)
  labels        float32 [B, num_classes], multi-hot
  num_frames    int32   [B] (ones at video level)

In segment mode (the 2019 segment-rated files) a row is a rated 5-frame segment instead of
a video: video_matrix is float32 [N, 5, D], labels holds the segment scores and
label_weights [N, num_classes] is 1 at every rated (segment, class) pair.

Video-level records are batched first and parsed with one parse op per batch; frame-level
records are parsed one at a time, in parallel, and their uint8 frames batched (measured
faster than a batched parse, whose padded per-frame strings cost more than they save). No
Python runs per record. When reading fails, `explain_error` re-reads the files one record
at a time to name the file, the record and what was wrong with it.
"""

import contextlib
import copy
from collections.abc import Iterator

import tensorflow as tf

import features
from errors import UserError

AUTOTUNE = tf.data.AUTOTUNE
# The settings that a bad record's description may name.
RECORD_SETTINGS = ("feature_names", "feature_sizes", "frame_features", "segment_labels")
# The context lists of the 2019 segment-rated files that segment mode reads (parallel:
# class segment_labels[i] was rated segment_scores[i] for the segment starting at frame
# segment_start_times[i]); segment_end_times is not read, every segment is 5 frames.
SEGMENT_FIELDS = (
    ("segment_start_times", tf.int64),
    ("segment_labels", tf.int64),
    ("segment_scores", tf.float32),
)


def list_files(data_pattern: str) -> list[str]:
    """Returns the sorted files matching a glob, which may be a gs:// or other gfile path.

    Raises:
      UserError: no file matches.
    """
    files = sorted(tf.io.gfile.glob(data_pattern)) if data_pattern else []
    if not files:
        raise UserError(f"No file matches data_pattern={data_pattern!r}.")
    return files


# Bytes read ahead per file: one request brings many records from a remote file system.
READ_BUFFER_BYTES = 8 << 20


def serialized_records(
    files: list[str],
    batch_size: int,
    training: bool,
    num_epochs: int,
    num_readers: int,
    buffer_size: int = READ_BUFFER_BYTES,
) -> tf.data.Dataset:
    """Returns the serialized records of `files` as a dataset of strings.

    Training: each epoch visits the files in a new random order, `num_readers` files are
    read at once and interleaved, and records are shuffled in a buffer of one batch (the
    original's min_after_dequeue). Otherwise: one pass over the files in sorted order, each
    file's records in file order, so every record appears once and in input order.
    """
    if not training:
        return tf.data.TFRecordDataset(files, buffer_size=buffer_size)
    file_names = tf.data.Dataset.from_tensor_slices(files)
    file_names = file_names.shuffle(len(files), reshuffle_each_iteration=True).repeat(num_epochs)
    # A sequential interleave: on a 2-core machine the parallel one costs the train step
    # more CPU time than it saves; the prefetch after parsing hides file latency.
    records = file_names.interleave(
        lambda name: tf.data.TFRecordDataset(name, buffer_size=buffer_size),
        cycle_length=max(1, min(num_readers, len(files))),
    )
    return records.shuffle(max(batch_size, 1))


def record_location(data_pattern: str, index: int) -> tuple[str, int]:
    """Returns (file, record number in it) of the index-th record of the sorted files.

    Counts the records of each file in turn: for an error message, not for reading.
    """
    for path in list_files(data_pattern):
        count = int(tf.data.TFRecordDataset(path).reduce(0, lambda count, _: count + 1))
        if index < count:
            return path, index
        index -= count
    raise IndexError(f"{data_pattern} holds fewer than {index} more records")


def pipeline_options() -> tf.data.Options:
    """Returns the options of every reader's pipeline: tf.data's autotuning off.

    On a 2-core machine the autotuner settled, run after run, on either of two
    configurations, one a third slower than the other (frame-level parsing: 1,530 or
    2,100-2,400 videos/s). Without it, AUTOTUNE parallelism is the number of schedulable
    cores, which measured the faster one every time and still scales with the machine.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


class BaseReader:
    """Shared pipeline: list files, read records, batch, parse, prefetch."""

    # Segment mode: a record gives one row per rated segment (any number) instead of one.
    segment_labels = False

    def __init__(self, num_classes: int, feature_sizes: list[int], feature_names: list[str]):
        if len(feature_names) != len(feature_sizes):
            raise UserError(
                f"feature_names {feature_names} and feature_sizes {feature_sizes} must have "
                "the same length."
            )
        self.num_classes = num_classes
        self.feature_sizes = list(feature_sizes)
        self.feature_names = list(feature_names)

    def get_dataset(
        self,
        data_pattern: str,
        batch_size: int,
        training: bool = False,
        num_epochs: int = 1,
        num_readers: int = 8,
    ) -> tf.data.Dataset:
        """Returns a dataset of parsed batches read from the files matching data_pattern.

        Args:
          data_pattern: glob of TFRecord files (local or any tf.io.gfile file system).
          batch_size: records per batch; the final batch may be smaller.
          training: shuffle files and records and repeat for num_epochs; otherwise one
            deterministic pass in input order.
          num_epochs: passes over the data in training mode (ignored otherwise).
          num_readers: files read in parallel in training mode.

        Raises:
          UserError: no file matches data_pattern.
        """
        files = list_files(data_pattern)
        records = serialized_records(
            files, batch_size, training, num_epochs, num_readers, self.read_buffer_bytes(files)
        )
        batches = self.parsed_batches(records, batch_size, deterministic=not training)
        if self.segment_labels:
            # A record gives any number of rows (segments): cut the rows into full batches.
            batches = batches.rebatch(batch_size)
        return batches.prefetch(AUTOTUNE).with_options(pipeline_options())

    def read_buffer_bytes(self, unused_files: list[str]) -> int:
        """Returns the read-ahead buffer of each file's TFRecordDataset."""
        return READ_BUFFER_BYTES

    def parsed_batches(
        self, records: tf.data.Dataset, batch_size: int, deterministic: bool
    ) -> tf.data.Dataset:
        """Returns the parsed batches of a dataset of serialized records."""
        batches = records.batch(batch_size, drop_remainder=False)
        return batches.map(
            self.parse_batch, num_parallel_calls=AUTOTUNE, deterministic=deterministic
        )

    def parse_batch(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        """Parses a [B] string tensor of serialized records into a batch dict."""
        raise NotImplementedError()

    def multi_hot_labels(self, labels: tf.SparseTensor) -> tf.Tensor:
        """Returns float32 [B, num_classes] multi-hot labels; fails on an id out of range."""
        with tf.control_dependencies(self.label_id_checks(labels.values)):
            indicator = tf.sparse.to_indicator(labels, self.num_classes)
        return tf.cast(indicator, tf.float32)

    def label_id_checks(self, ids: tf.Tensor) -> list[tf.Operation]:
        """Returns assertions that every class id is inside the vocabulary."""
        return [
            tf.debugging.assert_non_negative(ids, message="label id below 0"),
            tf.debugging.assert_less(
                ids,
                tf.constant(self.num_classes, ids.dtype),
                message=f"label id outside [0, {self.num_classes})",
            ),
        ]

    @contextlib.contextmanager
    def errors_explained(self, data_pattern: str) -> Iterator[None]:
        """Turns a TensorFlow error while reading data_pattern into a one-line UserError."""
        try:
            yield
        except tf.errors.OpError as error:
            problem = self.explain_error(error, data_pattern)
            if problem is None:
                raise
            raise UserError(problem, *RECORD_SETTINGS) from None

    def explain_error(self, error: tf.errors.OpError, data_pattern: str) -> str | None:
        """Returns a one-line description of the bad file or record behind `error`.

        Re-reads every file matching data_pattern one record at a time (slow, only on
        the error path) and reports the first problem found, or None if the files are
        fine and the error came from elsewhere.
        """
        # Only errors that bad records cause; an out-of-memory or model error is not worth
        # re-reading (possibly terabytes of) data for.
        if not isinstance(error, (tf.errors.DataLossError, tf.errors.InvalidArgumentError)):
            return None
        for path in list_files(data_pattern):
            problem = self.first_problem_in_file(path)
            if problem:
                return problem
        return None

    def first_problem_in_file(self, path: str) -> str | None:
        """Returns '<path>: record <i>: <what is wrong>' for the file's first bad record."""
        good_records = 0
        try:
            for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
                problem = self.record_problem(record)
                if problem:
                    return f"{path}: record {good_records}: {problem}"
                good_records += 1
        except tf.errors.DataLossError as error:
            return (
                f"{path}: not a valid TFRecord file (corrupt, truncated or CRC mismatch "
                f"after {good_records} good records: {first_line(error.message)})"
            )
        return None

    def record_problem(self, record: bytes) -> str | None:
        """Returns what is wrong with one serialized record, or None if it parses."""
        raise NotImplementedError()

    def label_problem(self, label_ids) -> str | None:
        """Returns a description of the first label id outside the vocabulary, or None."""
        for label in label_ids:
            if not 0 <= label < self.num_classes:
                return f"label id {label} is outside [0, {self.num_classes}) (num_classes)"
        return None


class YT8MAggregatedFeatureReader(BaseReader):
    """Reads video-level tf.train.Example records (mean_rgb, mean_audio, ...)."""

    def __init__(
        self,
        num_classes: int = 3862,
        feature_sizes: list[int] = (1024, 128),
        feature_names: list[str] = ("mean_rgb", "mean_audio"),
        id_feature: str = "id",
    ):
        """Creates a reader.

        Args:
          num_classes: size of the label vocabulary.
          feature_sizes: length of each feature, in the order of feature_names.
          feature_names: features to read, concatenated in this order.
          id_feature: key of the video id: "id", or "video_id" for the 2017 data.
        """
        super().__init__(num_classes, feature_sizes, feature_names)
        self.id_feature = id_feature

    def parse_batch(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        """Parses a batch of serialized Examples with one parse_example call."""
        spec = {
            self.id_feature: tf.io.FixedLenFeature([], tf.string),
            "labels": tf.io.VarLenFeature(tf.int64),
        }
        for name, size in zip(self.feature_names, self.feature_sizes):
            spec[name] = tf.io.FixedLenFeature([size], tf.float32)
        features = tf.io.parse_example(serialized, spec)
        video_matrix = tf.concat([features[name] for name in self.feature_names], axis=1)
        return {
            "video_ids": features[self.id_feature],
            "video_matrix": video_matrix,
            "labels": self.multi_hot_labels(features["labels"]),
            "num_frames": tf.ones_like(features[self.id_feature], dtype=tf.int32),
        }

    def record_problem(self, record: bytes) -> str | None:
        """Checks one Example against the reader's features, in plain Python."""
        try:
            example = tf.train.Example.FromString(record)
        except Exception:  # Protobuf raises its own DecodeError types.
            return "not a serialized tf.train.Example"
        features = example.features.feature
        if tf.train.SequenceExample.FromString(record).feature_lists.feature_list:
            return (
                "a frame-level tf.train.SequenceExample, but video-level tf.train.Example "
                "records were expected (the model was trained without {frame_features})"
            )
        if self.id_feature not in features:
            return f"missing the id feature {self.id_feature!r}"
        for name, size in zip(self.feature_names, self.feature_sizes):
            if name not in features:
                return f"missing feature {name!r} ({{feature_names}})"
            length = len(features[name].float_list.value)
            if length != size:
                return f"feature {name!r} has {length} floats, expected {size} ({{feature_sizes}})"
        return self.label_problem(features["labels"].int64_list.value)


class YT8MFrameFeatureReader(BaseReader):
    """Reads frame-level tf.train.SequenceExample records (rgb, audio per frame)."""

    def __init__(
        self,
        num_classes: int = 3862,
        feature_sizes: list[int] = (1024, 128),
        feature_names: list[str] = ("rgb", "audio"),
        max_frames: int = 300,
        segment_labels: bool = False,
        segment_size: int = 5,
        id_feature: str = "id",
        quantized_frames: bool = False,
    ):
        """Creates a reader.

        Args:
          num_classes: size of the label vocabulary.
          feature_sizes: bytes per frame of each feature, in the order of feature_names.
          feature_names: feature lists to read, concatenated per frame in this order.
          max_frames: frames kept per video; longer videos are truncated, shorter ones
            zero-padded.
          segment_labels: segment mode: one row per rated segment of the 2019
            segment-rated files (see segment_rows), instead of one per video.
          segment_size: frames per segment in segment mode.
          id_feature: key of the video id: "id", or "video_id" for the 2017 data.
          quantized_frames: return video_matrix as the uint8 frames (padding 0) and leave
            dequantization to the model step (features.dequantized_and_normalized): a
            quarter of the bytes through the input pipeline. The padding mask then comes
            from num_frames, the first feature's length, for every feature. Ignored in
            segment mode, whose short segments are dequantized here.
        """
        super().__init__(num_classes, feature_sizes, feature_names)
        self.segment_labels = segment_labels
        self.segment_size = segment_size
        self.max_frames = max_frames
        self.id_feature = id_feature
        self.quantized_frames = quantized_frames

    def context_features(self) -> dict:
        """Returns the parse spec of the context: the id and the labels (or segment lists)."""
        if self.segment_labels:
            spec = {name: tf.io.VarLenFeature(dtype) for name, dtype in SEGMENT_FIELDS}
        else:
            spec = {"labels": tf.io.VarLenFeature(tf.int64)}
        spec[self.id_feature] = tf.io.FixedLenFeature([], tf.string)
        return spec

    def sequence_features(self) -> dict:
        """Returns the parse spec of the frames: one byte string per frame and feature."""
        return {name: tf.io.FixedLenSequenceFeature([], tf.string) for name in self.feature_names}

    def read_buffer_bytes(self, files: list[str]) -> int:
        """Returns 0 (no read-ahead copy) for local files, the default for remote ones.

        A frame-level record is 100-200 KB: from a local file a buffer only adds a copy
        (measured 2,000 → 2,380 videos/s); remote reads keep it, one request per buffer.
        """
        if any("://" in path for path in files):
            return READ_BUFFER_BYTES
        return 0

    def parsed_batches(
        self, records: tf.data.Dataset, batch_size: int, deterministic: bool
    ) -> tf.data.Dataset:
        """Returns the batches of records parsed one at a time, in parallel."""
        parsed = records.map(
            self.parse_record, num_parallel_calls=AUTOTUNE, deterministic=deterministic
        )
        return parsed.batch(batch_size).map(
            lambda record: self.rows(**record), num_parallel_calls=AUTOTUNE
        )

    def parse_record(self, serialized: tf.Tensor) -> dict:
        """Parses one serialized SequenceExample into rows()'s arguments, unbatched."""
        context, sequences = tf.io.parse_single_sequence_example(
            serialized,
            context_features=self.context_features(),
            sequence_features=self.sequence_features(),
        )
        quantized, frame_counts = [], []
        for name, size in zip(self.feature_names, self.feature_sizes):
            frame_bytes = sequences[name][: self.max_frames]
            check = tf.debugging.assert_equal(
                tf.strings.length(frame_bytes), size, message=f"a frame is not {size} bytes"
            )
            with tf.control_dependencies([check]):
                frames = tf.io.decode_raw(frame_bytes, tf.uint8, fixed_length=size)
            count = tf.shape(frames)[0]
            padded = tf.pad(frames, [[0, self.max_frames - count], [0, 0]])
            quantized.append(tf.ensure_shape(padded, [self.max_frames, size]))
            frame_counts.append(count)
        return {  # Tuples: tf.data would turn lists into stacked tensors.
            "context": context,
            "quantized": tuple(quantized),
            "frame_counts": tuple(frame_counts),
            "first_length": tf.shape(sequences[self.feature_names[0]])[0],
        }

    def parse_batch(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        """Parses a batch of serialized SequenceExamples with one parse call (serving)."""
        context, sequences, lengths = tf.io.parse_sequence_example(
            serialized,
            context_features=self.context_features(),
            sequence_features=self.sequence_features(),
        )
        quantized, frame_counts = [], []
        for name, size in zip(self.feature_names, self.feature_sizes):
            count = tf.minimum(tf.cast(lengths[name], tf.int32), self.max_frames)
            quantized.append(self.padded_frames(sequences[name], count, size))
            frame_counts.append(count)
        first_length = tf.cast(lengths[self.feature_names[0]], tf.int32)
        return self.rows(context, quantized, frame_counts, first_length)

    def rows(self, context, quantized, frame_counts, first_length) -> dict[str, tf.Tensor]:
        """Returns the batch dict of a batch of parsed videos (see segment_rows for the args)."""
        if self.segment_labels:
            return self.segment_rows(context, quantized, frame_counts, first_length)
        if self.quantized_frames:
            video_matrix = tf.concat(quantized, axis=2)
        else:
            video_matrix = features.dequantize_frames(quantized, frame_counts)
        return {
            "video_ids": context[self.id_feature],
            "video_matrix": video_matrix,
            "labels": self.multi_hot_labels(context["labels"]),
            # Faithful: num_frames comes from the first feature only.
            "num_frames": frame_counts[0],
        }

    def per_video(self) -> "YT8MFrameFeatureReader":
        """Returns this reader in video mode, frames left quantized (for the segment model)."""
        reader = copy.copy(self)
        reader.segment_labels = False
        reader.quantized_frames = True
        return reader

    def segment_rows(self, context, quantized, frame_counts, first_length) -> dict:
        """Returns one row per rated segment of a batch of videos, as the original did.

        A video's segments are its distinct segment_start_times, in order of first
        appearance; segment s holds frames s .. s+segment_size-1, zero after the video's
        end. Its labels hold the segment_scores of the classes rated for it, and
        label_weights is 1 exactly there. num_frames is segment_size for every segment.

        Args:
          context: the parsed context: id and the SEGMENT_FIELDS (sparse, one row per video).
          quantized: per feature, uint8 [B, max_frames, size] frames.
          frame_counts: per feature, int32 [B] real frames, at most max_frames.
          first_length: int32 [B] frames of the first feature, uncapped.
        """
        starts = context["segment_start_times"]
        class_ids = context["segment_labels"].values
        checks = [
            *self.segment_list_checks(context, first_length),
            *self.label_id_checks(class_ids),
        ]
        with tf.control_dependencies(checks):
            # Distinct (video, start) keys, in order of first appearance.
            video_of_rating = starts.indices[:, 0]
            keys, segment_of_rating = tf.unique(video_of_rating * (1 << 32) + starts.values)
        segment_video = keys // (1 << 32)
        segment_start = tf.cast(keys % (1 << 32), tf.int32)
        frame_index = segment_start[:, tf.newaxis] + tf.range(self.segment_size)
        positions = tf.stack(
            [
                tf.broadcast_to(segment_video[:, tf.newaxis], tf.shape(frame_index)),
                tf.cast(tf.minimum(frame_index, self.max_frames - 1), tf.int64),
            ],
            axis=-1,
        )
        segment_frames = [tf.gather_nd(frames, positions) for frames in quantized]
        real_frames = [
            tf.clip_by_value(tf.gather(count, segment_video) - segment_start, 0, self.segment_size)
            for count in frame_counts
        ]
        num_segments = tf.shape(keys, out_type=tf.int64)[0]
        rated = tf.stack([tf.cast(segment_of_rating, tf.int64), class_ids], axis=1)
        shape = tf.stack([num_segments, self.num_classes])
        # A pair rated twice keeps its highest score (the original's result was undefined).
        labels = tf.tensor_scatter_nd_max(tf.zeros(shape), rated, context["segment_scores"].values)
        label_weights = tf.scatter_nd(rated, tf.ones_like(class_ids, tf.float32), shape)
        return {
            "video_ids": tf.gather(context[self.id_feature], segment_video),
            "video_matrix": features.dequantize_frames(segment_frames, real_frames),
            "labels": labels,
            "label_weights": tf.minimum(label_weights, 1.0),
            "num_frames": tf.fill([num_segments], self.segment_size),
        }

    def segment_list_checks(self, context, first_length) -> list[tf.Operation]:
        """Returns assertions that each video's segment lists are usable.

        Every video has rated segments, its three lists are parallel, and every start
        time falls inside the frames read (the video's first max_frames frames).
        """
        lengths = [
            tf.math.bincount(
                tf.cast(context[name].indices[:, 0], tf.int32),
                minlength=tf.shape(first_length)[0],
            )
            for name, _ in SEGMENT_FIELDS
        ]
        starts = context["segment_start_times"]
        frames_read = tf.minimum(first_length, self.max_frames)
        start_limit = tf.gather(tf.cast(frames_read, tf.int64), starts.indices[:, 0])
        return [
            tf.debugging.assert_positive(lengths[0], message="a video has no rated segments"),
            tf.debugging.assert_equal(lengths[0], lengths[1], message="segment lists differ"),
            tf.debugging.assert_equal(lengths[0], lengths[2], message="segment lists differ"),
            tf.debugging.assert_non_negative(starts.values, message="segment start below 0"),
            tf.debugging.assert_less(
                starts.values, start_limit, message="segment start outside the video"
            ),
        ]

    def padded_frames(self, frame_bytes: tf.Tensor, count: tf.Tensor, size: int) -> tf.Tensor:
        """Returns uint8 [B, max_frames, size]: the frames, truncated or zero-padded.

        Args:
          frame_bytes: string [B, T]: one byte string per frame, "" after a video's end.
          count: int32 [B]: frames per video, at most max_frames.
          size: the expected bytes per frame.
        """
        frame_bytes = frame_bytes[:, : self.max_frames]
        real = tf.sequence_mask(count, tf.shape(frame_bytes)[1])
        wrong_size = tf.logical_and(real, tf.strings.length(frame_bytes) != size)
        check = tf.debugging.assert_equal(
            tf.reduce_any(wrong_size), False, message=f"a frame is not {size} bytes"
        )
        with tf.control_dependencies([check]):
            frames = tf.io.decode_raw(frame_bytes, tf.uint8, fixed_length=size)
        padding = self.max_frames - tf.shape(frames)[1]
        return tf.pad(frames, [[0, 0], [0, padding], [0, 0]])

    def record_problem(self, record: bytes) -> str | None:
        """Checks one SequenceExample against the reader's features, in plain Python."""
        try:
            example = tf.train.SequenceExample.FromString(record)
        except Exception:  # Protobuf raises its own DecodeError types.
            return "not a serialized tf.train.SequenceExample"
        if self.id_feature not in example.context.feature:
            return f"missing the id feature {self.id_feature!r}"
        feature_lists = example.feature_lists.feature_list
        if not feature_lists and any(
            feature.HasField("float_list") for feature in example.context.feature.values()
        ):
            return (
                "a video-level tf.train.Example, but frame-level tf.train.SequenceExample "
                "records were expected (the model was trained with {frame_features})"
            )
        for name, size in zip(self.feature_names, self.feature_sizes):
            if name not in feature_lists:
                return f"missing feature list {name!r} ({{feature_names}})"
            for frame_index, frame in enumerate(feature_lists[name].feature):
                values = frame.bytes_list.value
                if len(values) != 1 or len(values[0]) != size:
                    length = sum(len(value) for value in values)
                    return (
                        f"feature {name!r} frame {frame_index} has {length} bytes, expected "
                        f"{size} ({{feature_sizes}})"
                    )
        if self.segment_labels:
            num_frames = len(feature_lists[self.feature_names[0]].feature)
            return self.segment_problem(example.context.feature, num_frames)
        return self.label_problem(example.context.feature["labels"].int64_list.value)

    def segment_problem(self, context, num_frames: int) -> str | None:
        """Returns what keeps a record's segment lists from being read, or None.

        Args:
          context: the record's context features (a protobuf map).
          num_frames: the record's frames of the first feature.
        """
        missing = [name for name, _ in SEGMENT_FIELDS if name not in context]
        if missing:
            return (
                f"no segment ratings ({', '.join(missing)} missing), but {{segment_labels}} "
                "reads the segment-rated (2019 validate/test) files"
            )
        starts = context["segment_start_times"].int64_list.value
        class_ids = context["segment_labels"].int64_list.value
        scores = context["segment_scores"].float_list.value
        if not starts:
            return "no rated segments (segment_start_times is empty)"
        if not len(starts) == len(class_ids) == len(scores):
            return (
                f"segment_start_times, segment_labels and segment_scores hold {len(starts)}, "
                f"{len(class_ids)} and {len(scores)} values; they must be parallel"
            )
        frames_read = min(num_frames, self.max_frames)
        for start in starts:
            if not 0 <= start < frames_read:
                return (
                    f"segment start time {start} is outside the video's frames "
                    f"[0, {frames_read}) ({num_frames} frames, at most max_frames="
                    f"{self.max_frames} read)"
                )
        return self.label_problem(class_ids)


def numeric_features(batch: dict) -> dict:
    """Returns a batch without its video ids: what a device and an XLA-compiled step take."""
    return {key: value for key, value in batch.items() if key != "video_ids"}


def segment_ids(video_ids: tf.Tensor, starts: tf.Tensor) -> tf.Tensor:
    """Returns the Kaggle 2019 segment ids `<video_id>:<start frame>` (string tensor)."""
    return tf.strings.join([video_ids, tf.strings.as_string(starts)], separator=":")


def first_line(message: str) -> str:
    """Returns the first meaningful line of a TensorFlow error message."""
    for line in message.splitlines():
        line = line.strip()
        if line.startswith("{{function_node"):
            line = line.split("}}", 1)[-1].strip()
        line = line.split(" [Op:", 1)[0].strip()
        if line:
            return line
    return message


def create_reader(
    frame_features: bool,
    feature_names: str,
    feature_sizes: str,
    num_classes: int = 3862,
    id_feature: str = "id",
    quantized_frames: bool = False,
    segment_labels: bool = False,
) -> BaseReader:
    """Returns the reader for the feature settings that train, eval and inference share.

    Args:
      frame_features: read frame-level SequenceExamples instead of video-level Examples.
      feature_names: comma-separated feature names, as the --feature_names flag.
      feature_sizes: comma-separated sizes, as the --feature_sizes flag.
      num_classes: size of the label vocabulary.
      id_feature: key of the video id: "id", or "video_id" for the 2017 data.
      quantized_frames: frame level only: uint8 frames, dequantized in the model step.
      segment_labels: frame level only: one row per rated segment (2019 files).

    Raises:
      UserError: segment_labels without frame_features (segments are made of frames).
    """
    names, sizes = features.names_and_sizes(feature_names, feature_sizes)
    if segment_labels and not frame_features:
        raise UserError(
            "{segment_labels} needs a frame-level model ({frame_features}): segments are "
            "cut from the frames; this model reads video-level features.",
            "segment_labels",
            "frame_features",
        )
    if frame_features:
        return YT8MFrameFeatureReader(
            num_classes=num_classes,
            feature_names=names,
            feature_sizes=sizes,
            id_feature=id_feature,
            quantized_frames=quantized_frames,
            segment_labels=segment_labels,
        )
    return YT8MAggregatedFeatureReader(
        num_classes=num_classes, feature_names=names, feature_sizes=sizes, id_feature=id_feature
    )
