"""segment_eval_inference.py: the Kaggle 2019 segment mAP against a plain transcription."""

import random

import pytest
import tensorflow as tf
from conftest import one_error_line, run_script

import cli
import segment_eval_inference as segment_eval
import segment_submission
from errors import UserError

TOP_N = 8
# Classes rated with at least one positive, rated only 0, submitted but never rated, and
# rated but never submitted.
POSITIVE_CLASSES = (10, 20, 30)
ZERO_CLASS = 40
UNRATED_CLASS = 50
UNSUBMITTED_CLASS = 60
# The short line whose last segment id is a positive: it must count (the original's bug).
SHORT_LINE_CLASS = 30


def int64s(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def segment_record(video_id: str, ratings, lists=True, video_id_feature=True) -> bytes:
    """Returns a segment-rated SequenceExample; ratings are (start, class, score) triples."""
    starts, classes, scores = zip(*ratings) if ratings else ((), (), ())
    context = {}
    if video_id_feature:
        context["id"] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[video_id.encode("utf-8")])
        )
    if lists:
        context["segment_start_times"] = int64s(starts)
        context["segment_labels"] = int64s(classes)
        context["segment_scores"] = tf.train.Feature(
            float_list=tf.train.FloatList(value=list(scores))
        )
    # Enough frames for every start, each a 1024-byte rgb frame as in the real files.
    frame = tf.train.Feature(bytes_list=tf.train.BytesList(value=[bytes(1024)]))
    num_frames = max(starts, default=0) + 5
    rgb = tf.train.FeatureList(feature=[frame] * num_frames)
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list={"rgb": rgb}),
    ).SerializeToString()


def write_records(path, records) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def random_ratings(rng: random.Random) -> dict[str, list[tuple[int, int, float]]]:
    """Returns (start, class, score) ratings of 16 videos, one id not ASCII."""
    videos = {}
    for index in range(16):
        video_id = "vidé" if index == 3 else f"v{index:03d}"
        ratings = []
        for start in rng.sample(range(0, 50, 5), rng.randint(2, 5)):
            classes = (*POSITIVE_CLASSES, ZERO_CLASS, UNSUBMITTED_CLASS)
            for label in rng.sample(classes, rng.randint(1, 3)):
                score = 0.0 if label == ZERO_CLASS else rng.choice([0.0, 1.0, 1.0, 0.5])
                ratings.append((start, label, score))
        videos[video_id] = ratings
    return videos


def label_dict(videos) -> dict[tuple[str, int], float]:
    return {
        (f"{video_id}:{start}", label): score
        for video_id, ratings in videos.items()
        for start, label, score in ratings
    }


def random_submission(rng: random.Random, labels) -> dict[int, list[str]]:
    """Returns each submitted class's list: rated and unrated segments, shuffled."""
    all_segments = sorted({segment for segment, _ in labels})
    submission = {}
    for label in (*POSITIVE_CLASSES, ZERO_CLASS, UNRATED_CLASS):
        rated = [segment for segment, rated_label in labels if rated_label == label]
        unrated = [segment for segment in all_segments if (segment, label) not in labels]
        listed = rng.sample(rated, len(rated) * 2 // 3) + rng.sample(unrated, 4) + ["zz:0"]
        rng.shuffle(listed)
        submission[label] = listed
    positives = [s for s, label in labels if label == SHORT_LINE_CLASS and labels[s, label] > 0]
    negatives = [s for s in all_segments if (s, SHORT_LINE_CLASS) not in labels]
    submission[SHORT_LINE_CLASS] = [negatives[0], positives[0], negatives[1], positives[1]]
    return submission


def brute_force_map(labels, submission, top_n: int) -> float:
    """The metric as written down: per class, AP over its rated listed segments, in order."""
    average_precisions = []
    for label in sorted(submission):
        listed = submission[label][:top_n] if top_n else submission[label]
        kept = [segment for segment in listed if (segment, label) in labels]
        all_positives = sum(1 for (_, c), score in labels.items() if c == label and score > 0)
        if all_positives == 0:
            continue
        hits, total = 0, 0.0
        for rank, segment in enumerate(kept, start=1):
            if labels[segment, label] > 0:
                hits += 1
                total += hits / rank
        average_precisions.append(total / all_positives)
    return sum(average_precisions) / len(average_precisions)


def submission_text(submission) -> str:
    lines = [f"{label},{' '.join(segments)}\n" for label, segments in submission.items()]
    return segment_submission.HEADER + "\n" + "".join(lines)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A random case on two files, scored once by the script, which writes the cache."""
    directory = tmp_path_factory.mktemp("segment_eval")
    rng = random.Random(2019)
    videos = random_ratings(rng)
    labels = label_dict(videos)
    submission = random_submission(rng, labels)
    records = [segment_record(video_id, ratings) for video_id, ratings in videos.items()]
    write_records(directory / "validate0000.tfrecord", records[:7])
    write_records(directory / "validate0001.tfrecord", records[7:])
    submission_file = directory / "segments.csv"
    submission_file.write_text(submission_text(submission))
    cache = directory / "labels.cache"
    result = run_script(
        "segment_eval_inference.py",
        f"--eval_data_pattern={directory}/validate*.tfrecord",
        f"--submission_file={submission_file}",
        f"--label_cache={cache}",
        f"--top_n={TOP_N}",
    )
    return {
        "labels": labels,
        "submission": submission,
        "submission_file": str(submission_file),
        "cache": cache,
        "result": result,
        "directory": directory,
    }


def expected_line(case) -> str:
    map_at_n = brute_force_map(case["labels"], case["submission"], TOP_N)
    return f"Num classes: {len(case['submission'])} | mAP@{TOP_N}: {map_at_n:.6f}"


def test_the_case_exercises_truncation_and_the_last_id_of_a_line(case):
    labels, submission = case["labels"], case["submission"]
    assert any(len(segments) > TOP_N for segments in submission.values())
    assert brute_force_map(labels, submission, TOP_N) != brute_force_map(labels, submission, 0)
    without_last = {label: segments[:-1] for label, segments in submission.items()}
    assert brute_force_map(labels, submission, TOP_N) != brute_force_map(
        labels, without_last, TOP_N
    )


def test_printed_map_equals_the_brute_force_metric(case):
    assert case["result"].stdout.strip() == expected_line(case)
    assert expected_line(case) in case["result"].stderr  # also logged


def test_label_cache_holds_one_line_per_rated_pair_with_decoded_ids(case):
    lines = case["cache"].read_text(encoding="utf-8").splitlines()
    expected = {f"{segment},{label},{score}" for (segment, label), score in case["labels"].items()}
    assert len(lines) == len(expected)
    assert set(lines) == expected
    assert any(line.startswith("vidé:") for line in lines)


def test_map_read_back_from_the_label_cache_is_the_same(case, capsys):
    config = segment_eval.SegmentEvalConfig(
        eval_data_pattern=f"{case['directory']}/nothing*.tfrecord",  # the cache is read instead
        label_cache=str(case["cache"]),
        submission_file=case["submission_file"],
        top_n=TOP_N,
    )
    segment_eval.main(config)
    assert capsys.readouterr().out.strip() == expected_line(case)


def test_a_single_submitted_class_is_scored(case):
    labels = case["labels"]
    submission = {20: case["submission"][20]}
    ranked = segment_eval.rated_segments(submission, labels)
    assert segment_eval.mean_average_precision(ranked, labels) == pytest.approx(
        brute_force_map(labels, submission, 0), abs=1e-12
    )


def test_classes_without_positives_are_left_out_and_alone_are_an_error(case):
    labels = case["labels"]
    submission = {ZERO_CLASS: case["submission"][ZERO_CLASS], 10: case["submission"][10]}
    ranked = segment_eval.rated_segments(submission, labels)
    assert segment_eval.mean_average_precision(ranked, labels) == pytest.approx(
        brute_force_map(labels, {10: submission[10]}, 0), abs=1e-12
    )
    only_empty = {ZERO_CLASS: ranked[ZERO_CLASS], UNRATED_CLASS: []}
    with pytest.raises(UserError, match="No submitted class has a positively rated segment"):
        segment_eval.mean_average_precision(only_empty, labels)


def test_submission_skips_the_header_and_keeps_the_last_id_of_a_line(tmp_path):
    path = tmp_path / "segments.csv"
    path.write_text("Class,Segments\n3,a:0 b:5  c:10\n\n7,d:0\n3,e:5 f:0\n8\n")
    assert segment_eval.submitted_segments(str(path), 0) == {
        3: ["e:5", "f:0"],  # a class listed twice keeps its last line
        7: ["d:0"],
        8: [],
    }
    path.write_text("Class,Segments\r\n3,a:0 b:5 c:10\r\n")
    assert segment_eval.submitted_segments(str(path), 2) == {3: ["a:0", "b:5"]}


@pytest.mark.parametrize(
    "ratings, video_id_feature, message",
    [
        ([(0, 1, 1.0)], False, "record 1: missing the id feature 'id'"),
        ([], True, r"record 1: no rated segments \(segment_start_times is empty\)"),
        ([(0, 1, 1.0), (5, 1, 0.0)], True, None),  # unequal lists, written below
        ([(0, 5000, 1.0)], True, r"record 1: label id 5000 is outside \[0, 3862\)"),
    ],
)
def test_bad_record_is_named_in_one_line(tmp_path, ratings, video_id_feature, message):
    bad = segment_record("bad", ratings, video_id_feature=video_id_feature)
    if message is None:
        example = tf.train.SequenceExample.FromString(bad)
        del example.context.feature["segment_scores"].float_list.value[1:]
        bad = example.SerializeToString()
        message = "record 1: segment_start_times, segment_labels and segment_scores hold 2, 2 and 1"
    path = write_records(tmp_path / "data.tfrecord", [segment_record("good", [(0, 1, 1.0)]), bad])
    with pytest.raises(UserError, match=f"{path}: {message}"):
        segment_eval.labels_from_records(path)


def test_corrupt_file_is_named(tmp_path):
    path = tmp_path / "notes.tfrecord"
    path.write_text("this is not a TFRecord file\n" * 100)
    with pytest.raises(UserError, match=f"{path}: not a valid TFRecord file"):
        segment_eval.labels_from_records(str(path))


def test_missing_submission_file_flag_is_the_original_message(tmp_path):
    result = run_script("segment_eval_inference.py", f"--label_cache={tmp_path}/c", check=False)
    line = one_error_line(result)
    assert "You must input submission file" in line and "--submission_file" in line


def in_process_error(**settings) -> str:
    """Returns the one line the command line would print for main(settings)'s error."""
    with pytest.raises(UserError) as error:
        segment_eval.main(segment_eval.SegmentEvalConfig(**settings))
    return cli.one_line(error.value)


def test_pattern_matching_nothing_names_the_flag(case, tmp_path):
    line = in_process_error(
        eval_data_pattern=f"{tmp_path}/nothing*.tfrecord", submission_file=case["submission_file"]
    )
    assert "--eval_data_pattern" in line and "nothing*.tfrecord" in line


def test_record_without_segment_lists_names_the_file_and_record(case, tmp_path):
    good = segment_record("good", [(0, 10, 1.0)])
    path = write_records(tmp_path / "video.tfrecord", [good, good, segment_record("x", [], False)])
    line = in_process_error(eval_data_pattern=path, submission_file=case["submission_file"])
    assert f"{path}: record 2: no segment ratings" in line, line
    assert "segment_eval_inference.py reads the segment-rated" in line, line


@pytest.mark.parametrize(
    "text, message",
    [
        ("10,v001:0 v002:5\n", "{path}: expected the header Class,Segments"),
        ("Class,Segments\n10,v001:0\nten,v002:5\n", "{path}: line 3: 'ten' is not an integer"),
    ],
)
def test_bad_submission_names_the_file_and_what_was_expected(case, tmp_path, text, message):
    path = tmp_path / "segments.csv"
    path.write_text(text)
    line = in_process_error(
        eval_data_pattern=f"{case['directory']}/validate*.tfrecord", submission_file=str(path)
    )
    assert message.format(path=path) in line, line
