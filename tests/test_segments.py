"""The 2019 segment task, as a user runs it on the sample data's segment-rated files.

A frame-level model is trained on video-level labels, evaluated on rated segments,
fine-tuned on them (the same train_dir), evaluated again, then its segment model writes
a Kaggle 2019 submission that segment_eval_inference.py scores.
"""

import glob
import http.server
import os
import re
import threading

import numpy as np
import pytest
import tensorflow as tf
from conftest import frame_training, run_script, summary_events

import cli
import eval as eval_script
import export_model
import inference
import readers
import segment_submission
import train
from benchmarks import original_metrics
from errors import UserError

FRAME_FLAGS = (
    "--frame_features",
    "--feature_names=rgb,audio",
    "--feature_sizes=1024,128",
    "--model=FrameLevelLogisticModel",
    "--batch_size=32",
)
METRIC_TAGS = ("Avg_Hit@1", "Avg_Perr", "Avg_Loss", "MAP", "GAP")


def records(pattern: str) -> list[tf.train.SequenceExample]:
    """Returns the SequenceExamples of the files matching pattern, in reading order."""
    files = sorted(glob.glob(pattern))
    return [
        tf.train.SequenceExample.FromString(record)
        for record in tf.data.TFRecordDataset(files).as_numpy_iterator()
    ]


def independent_segment_rows(pattern: str, num_classes: int = 3862) -> dict:
    """Parses the rated segments from the protobufs with NumPy, as the original's reader did.

    Returns the reader's fields plus each segment's start, for matching model outputs.
    """
    rows = {key: [] for key in ("video_ids", "starts", "video_matrix", "labels", "weights")}
    for example in records(pattern):
        context = example.context.feature
        frames = [
            np.stack([np.frombuffer(frame.bytes_list.value[0], np.uint8) for frame in feature_list])
            for feature_list in (
                example.feature_lists.feature_list["rgb"].feature,
                example.feature_lists.feature_list["audio"].feature,
            )
        ]
        # The original's dequantization, in float32 as its graph computed it.
        quantized = np.concatenate(frames, axis=1).astype(np.float32)
        matrix = quantized * np.float32(4 / 255) + np.float32(4 / 512 - 2)
        starts = list(context["segment_start_times"].int64_list.value)
        unique_starts = list(dict.fromkeys(starts))
        for start in unique_starts:
            segment = np.zeros((5, matrix.shape[1]), np.float32)
            real = matrix[start : min(start + 5, 300)]
            segment[: len(real)] = real
            labels, weights = np.zeros(num_classes), np.zeros(num_classes)
            for rated_start, label, score in zip(
                starts,
                context["segment_labels"].int64_list.value,
                context["segment_scores"].float_list.value,
            ):
                if rated_start == start:
                    labels[label], weights[label] = score, 1.0
            rows["video_ids"].append(context["id"].bytes_list.value[0].decode())
            rows["starts"].append(start)
            rows["video_matrix"].append(segment)
            rows["labels"].append(labels)
            rows["weights"].append(weights)
    return {key: np.array(values) for key, values in rows.items()}


def epoch_metrics(train_dir: str, step: int) -> dict:
    """Returns the SegEval epoch summaries eval.py wrote for a checkpoint step."""
    events = summary_events(os.path.join(train_dir, "eval"))
    values = {}
    for tag in METRIC_TAGS:
        (event,) = [e for e in events.Tensors(f"Epoch/SegEval_{tag}") if e.step == step]
        values[tag] = float(tf.make_ndarray(event.tensor_proto))
    return values


def latest_step(train_dir: str) -> int:
    return int(tf.train.latest_checkpoint(train_dir).rsplit("-", 1)[1])


def evaluate_segments(train_dir: str, data_pattern: str) -> None:
    """Runs eval.py --segment_labels --run_once in this process."""
    eval_script.evaluate(
        eval_script.EvalConfig(
            train_dir=train_dir,
            eval_data_pattern=data_pattern,
            batch_size=64,
            run_once=True,
            segment_labels=True,
        )
    )


@pytest.fixture(scope="module")
def workflow(sample_data, tmp_path_factory) -> dict:
    """Runs the 2019 recipe with the scripts; returns paths, steps and outputs."""
    train_dir = str(tmp_path_factory.mktemp("segments"))
    validate = f"{sample_data}/segment/validate*.tfrecord"
    test = f"{sample_data}/segment/test*.tfrecord"
    run_script(
        "train.py",
        f"--train_data_pattern={sample_data}/frame/train*.tfrecord",
        f"--train_dir={train_dir}",
        *FRAME_FLAGS,
        "--num_epochs=3",
    )
    # Before fine-tuning, in this process (it saves a TensorFlow start-up).
    evaluate_segments(train_dir, validate)
    video_level_step = latest_step(train_dir)
    finetune = run_script(
        "train.py",
        "--segment_labels",
        f"--train_data_pattern={validate}",
        f"--train_dir={train_dir}",
        *FRAME_FLAGS,
        "--num_epochs=4",
    )
    eval_run = run_script(
        "eval.py",
        "--segment_labels",
        f"--eval_data_pattern={validate}",
        f"--train_dir={train_dir}",
        "--run_once",
        "--batch_size=64",
    )
    submission = os.path.join(train_dir, "segments.csv")
    run_script(
        "inference.py",
        "--segment_labels",
        f"--train_dir={train_dir}",
        f"--input_data_pattern={test}",
        f"--output_file={submission}",
    )
    scored = run_script(
        "segment_eval_inference.py",
        f"--eval_data_pattern={test}",
        f"--submission_file={submission}",
        "--top_n=100000",
    )
    return {
        "train_dir": train_dir,
        "validate": validate,
        "test": test,
        "video_level_step": video_level_step,
        "segment_step": latest_step(train_dir),
        "finetune_log": finetune.stderr,
        "eval_log": eval_run.stderr,
        "submission": submission,
        "scored": scored.stdout,
    }


# ---------------------------------------------------------------------------------------
# The reader.


def test_reader_rows_equal_an_independent_parse(sample_data):
    pattern = f"{sample_data}/segment/validate*.tfrecord"
    expected = independent_segment_rows(pattern)
    reader = readers.YT8MFrameFeatureReader(segment_labels=True)
    batches = list(reader.get_dataset(pattern, batch_size=37))
    assert all(len(batch["video_ids"]) == 37 for batch in batches[:-1])
    got = {key: np.concatenate([b[key].numpy() for b in batches]) for key in batches[0]}
    assert [video_id.decode() for video_id in got["video_ids"]] == list(expected["video_ids"])
    np.testing.assert_array_equal(got["video_matrix"], expected["video_matrix"])
    np.testing.assert_array_equal(got["labels"], expected["labels"])
    np.testing.assert_array_equal(got["label_weights"], expected["weights"])
    assert set(got["num_frames"].tolist()) == {5}
    # The data has both kinds of rating, and segments rated for two classes.
    assert set(np.unique(expected["labels"][expected["weights"] > 0])) == {0.0, 1.0}
    assert expected["weights"].sum(axis=1).max() == 2


def segment_record(video_id, num_frames, starts, labels, scores, **extra_context):
    """Returns a SequenceExample with rgb/audio frames whose bytes count up."""
    feature = tf.train.Feature

    def frames(size, step):
        values = [bytes((i * step + j) % 256 for j in range(size)) for i in range(num_frames)]
        return tf.train.FeatureList(
            feature=[feature(bytes_list=tf.train.BytesList(value=[v])) for v in values]
        )

    context = {
        "id": feature(bytes_list=tf.train.BytesList(value=[video_id])),
        "segment_start_times": feature(int64_list=tf.train.Int64List(value=starts)),
        "segment_labels": feature(int64_list=tf.train.Int64List(value=labels)),
        "segment_scores": feature(float_list=tf.train.FloatList(value=scores)),
        **extra_context,
    }
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(
            feature_list={"rgb": frames(1024, 7), "audio": frames(128, 3)}
        ),
    ).SerializeToString()


def write_records(path, *serialized) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in serialized:
            writer.write(record)
    return str(path)


def test_segment_past_the_last_frame_is_zero_padded_and_starts_keep_first_order(tmp_path):
    path = write_records(
        tmp_path / "short.tfrecord",
        segment_record(b"v", 12, [10, 0, 10], [4, 2, 9], [1.0, 0.0, 0.0]),
    )
    expected = independent_segment_rows(path)
    batch = next(iter(readers.YT8MFrameFeatureReader(segment_labels=True).get_dataset(path, 8)))
    assert expected["starts"].tolist() == [10, 0]
    np.testing.assert_array_equal(batch["video_matrix"].numpy(), expected["video_matrix"])
    assert np.all(batch["video_matrix"].numpy()[0, 2:] == 0.0)
    np.testing.assert_array_equal(batch["label_weights"].numpy(), expected["weights"])
    assert batch["labels"].numpy()[0, 4] == 1.0 and batch["labels"].numpy().sum() == 1.0


@pytest.mark.parametrize(
    "record, problem",
    [
        (segment_record(b"v", 10, [5, 10], [1, 2], [1.0, 0.0]), "record 1: segment start time 10"),
        (segment_record(b"v", 10, [5], [1, 2], [1.0, 1.0]), "record 1: segment_start_times, "),
        (segment_record(b"v", 10, [5], [4000], [1.0]), "record 1: label id 4000 is outside"),
        (segment_record(b"v", 10, [], [], []), "record 1: no rated segments"),
    ],
)
def test_bad_segment_record_is_named_in_one_line(tmp_path, record, problem):
    good = segment_record(b"g", 10, [0], [1], [1.0])
    path = write_records(tmp_path / "bad.tfrecord", good, record)
    reader = readers.YT8MFrameFeatureReader(segment_labels=True)
    with pytest.raises(UserError) as error:
        with reader.errors_explained(path):
            list(reader.get_dataset(path, 4))
    assert str(error.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(error.value)


def test_segment_mode_on_files_without_ratings_names_the_file_and_record(sample_data):
    path = f"{sample_data}/frame/validate0001.tfrecord"
    reader = readers.YT8MFrameFeatureReader(segment_labels=True)
    with pytest.raises(UserError) as error:
        with reader.errors_explained(path):
            list(reader.get_dataset(path, 16))
    assert cli.one_line(error.value) == (
        f"{sample_data}/frame/validate0001.tfrecord: record 0: no segment ratings "
        "(segment_start_times, segment_labels, segment_scores missing), but --segment_labels "
        "reads the segment-rated (2019 validate/test) files"
    )


# ---------------------------------------------------------------------------------------
# Training and evaluation.


def test_fine_tuning_lowers_the_segment_loss_and_raises_segment_map(workflow):
    before = epoch_metrics(workflow["train_dir"], workflow["video_level_step"])
    after = epoch_metrics(workflow["train_dir"], workflow["segment_step"])
    assert workflow["segment_step"] > workflow["video_level_step"]
    assert after["Avg_Loss"] < 0.8 * before["Avg_Loss"]
    assert after["MAP"] > before["MAP"] + 0.05
    # It resumed the video-level model (same model_flags.json), not a new one.
    assert "Restoring from checkpoint" in workflow["finetune_log"]
    assert re.search(r"epoch/eval number \d+ \| Avg_Hit@1: ", workflow["eval_log"])


def saved_model_scores(serve, pattern: str, class_ids) -> dict:
    """Returns {(segment id, class): score} for the given classes of every segment."""
    scores = {}
    serialized = [r for r in tf.data.TFRecordDataset(sorted(glob.glob(pattern)))]
    for first in range(0, len(class_ids), 20):
        chunk = tf.constant(class_ids[first : first + 20], tf.int32)
        outputs = serve(example_bytes=tf.stack(serialized), class_ids=chunk)
        for segment_id, classes, values in zip(
            outputs["segment_id"].numpy(),
            outputs["class_indexes"].numpy(),
            outputs["predictions"].numpy(),
        ):
            for label, score in zip(classes, values):
                scores[(segment_id.decode(), int(label))] = float(score)
    return scores


def test_segment_eval_metrics_equal_brute_force_on_the_segment_saved_model(workflow):
    serve = export_model.load(os.path.join(workflow["train_dir"], "segment_inference_model"))
    rows = independent_segment_rows(workflow["validate"])
    rated_classes = np.unique(np.nonzero(rows["weights"])[1])
    scores = saved_model_scores(serve, workflow["validate"], rated_classes)
    predictions = np.zeros_like(rows["labels"])
    for i, (video_id, start) in enumerate(zip(rows["video_ids"], rows["starts"])):
        for label in np.flatnonzero(rows["weights"][i]):
            predictions[i, label] = scores[(f"{video_id}:{start}", label)]
    labels = rows["labels"]
    metrics = original_metrics.EvaluationMetrics(labels.shape[1], 20)
    metrics.accumulate(predictions, labels, np.zeros(len(labels)))
    expected = metrics.get()
    got = epoch_metrics(workflow["train_dir"], workflow["segment_step"])
    np.testing.assert_allclose(got["Avg_Hit@1"], expected["avg_hit_at_one"], atol=1e-6)
    np.testing.assert_allclose(got["Avg_Perr"], expected["avg_perr"], atol=1e-6)
    np.testing.assert_allclose(got["GAP"], expected["gap"], atol=1e-5)
    np.testing.assert_allclose(got["MAP"], np.mean(expected["aps"]), atol=1e-5)
    # The loss: cross entropy over the rated pairs only, as the fine-tuning minimised.
    epsilon = 1e-5
    terms = -(
        labels * np.log(predictions + epsilon) + (1 - labels) * np.log(1 - predictions + epsilon)
    )
    np.testing.assert_allclose(
        got["Avg_Loss"], np.mean(np.sum(terms * rows["weights"], axis=1)), rtol=1e-4
    )


@pytest.mark.parametrize(
    "name, hyperparameters",
    [
        ("DbofModel", {"dbof_cluster_size": 16, "dbof_hidden_size": 8}),
        ("LstmModel", {"lstm_cells": 4, "lstm_layers": 1}),
        ("GruModel", {"gru_cells": 4, "gru_layers": 1}),
        ("NetVLADModelLF", {"netvlad_cluster_size": 4, "netvlad_hidden_size": 8, "gating": True}),
        (
            "MixNeXtVladModel",
            {"nextvlad_cluster_size": 4, "nextvlad_hidden_size": 8, "mix_number": 2},
        ),
    ],
)
def test_frame_level_models_train_evaluate_and_serve_5_frame_segments(
    sample_data, tmp_path, name, hyperparameters
):
    # FrameLevelLogisticModel goes through the whole workflow above; these as well,
    # on two steps, from the segment training through the segment model.
    train_dir = str(tmp_path)
    segment_files = f"{sample_data}/segment/validate0000.tfrecord"
    config = frame_training(
        train_dir,
        segment_files,
        name,
        hyperparameters,
        segment_labels=True,
        batch_size=16,
        max_steps=2,
    )
    assert train.train(config) == 2
    evaluate_segments(train_dir, segment_files)
    serve = export_model.load(os.path.join(train_dir, "segment_inference_model"))
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(segment_files).take(3)]
    outputs = serve(example_bytes=tf.constant(serialized), class_ids=tf.range(3862))
    frames = [
        len(record.feature_lists.feature_list["rgb"].feature)
        for record in records(segment_files)[:3]
    ]
    assert outputs["predictions"].shape == (sum(-(-n // 5) for n in frames), 20)
    assert np.all(np.isfinite(outputs["predictions"].numpy()))


# ---------------------------------------------------------------------------------------
# The submission and its score.


def submission_lines(path: str) -> list[str]:
    with open(path) as file:
        return file.read().splitlines()


def expected_submission(serve, pattern: str, class_ids, max_per_class: int) -> dict:
    """Returns {class: [segment ids]} ranked by brute force from the segment model."""
    serialized = [r for r in tf.data.TFRecordDataset(sorted(glob.glob(pattern)))]
    outputs = serve(example_bytes=tf.stack(serialized), class_ids=tf.constant(class_ids))
    candidates = {}
    for order, (segment_id, classes, values) in enumerate(
        zip(
            outputs["segment_id"].numpy(),
            outputs["class_indexes"].numpy(),
            outputs["predictions"].numpy(),
        )
    ):
        for label, score in zip(classes, values):
            candidates.setdefault(int(label), []).append((-score, order, segment_id.decode()))
    return {
        label: [segment for _, _, segment in sorted(entries)[:max_per_class]]
        for label, entries in candidates.items()
    }


def test_submission_is_the_kaggle_2019_format_ranked_from_the_segment_model(workflow):
    lines = submission_lines(workflow["submission"])
    assert lines[0] == "Class,Segments"
    submitted = {int(c): ids.split(" ") for c, ids in (line.split(",") for line in lines[1:])}
    whitelist = segment_submission.whitelist(inference.SEGMENT_LABEL_IDS_FILE, 3862)
    assert len(whitelist) == 1000
    assert list(submitted) == sorted(submitted) and set(submitted) <= set(whitelist.tolist())
    frames = {
        e.context.feature["id"].bytes_list.value[0].decode(): len(
            e.feature_lists.feature_list["rgb"].feature
        )
        for e in records(workflow["test"])
    }
    all_ids = {f"{v}:{start}" for v, n in frames.items() for start in range(0, min(n, 300), 5)}
    assert set().union(*submitted.values()) == all_ids  # Every segment, short ones too.
    serve = export_model.load(os.path.join(workflow["train_dir"], "segment_inference_model"))
    assert submitted == expected_submission(serve, workflow["test"], whitelist, 100000)


def test_per_class_cap_keeps_the_best_segments(workflow, tmp_path):
    output = str(tmp_path / "capped.csv")
    whitelist_file = tmp_path / "ids.csv"
    whitelist_file.write_text("Index\n3\n7\n8\n11\n12\n17\nnot a class\n")
    inference.main(
        inference.InferenceConfig(
            train_dir=workflow["train_dir"],
            input_data_pattern=workflow["test"],
            output_file=output,
            segment_labels=True,
            segment_max_pred=4,
            segment_label_ids_file=str(whitelist_file),
            batch_size=7,
        )
    )
    lines = submission_lines(output)
    submitted = {int(c): ids.split(" ") for c, ids in (line.split(",") for line in lines[1:])}
    serve = export_model.load(os.path.join(workflow["train_dir"], "segment_inference_model"))
    expected = expected_submission(serve, workflow["test"], [3, 7, 8, 11, 12, 17], 4)
    assert submitted == expected
    assert all(len(ids) == 4 for ids in submitted.values())


def brute_force_segment_map(submission: str, pattern: str) -> tuple[int, float]:
    """The Kaggle 2019 metric written out plainly: (classes submitted, mAP)."""
    rated = {}
    for example in records(pattern):
        context = example.context.feature
        video_id = context["id"].bytes_list.value[0].decode()
        for start, label, score in zip(
            context["segment_start_times"].int64_list.value,
            context["segment_labels"].int64_list.value,
            context["segment_scores"].float_list.value,
        ):
            rated[(f"{video_id}:{start}", label)] = score
    lines = submission_lines(submission)[1:]
    average_precisions = []
    for line in lines:
        label, ids = line.split(",")
        label = int(label)
        positives = sum(1 for (_, c), s in rated.items() if c == label and s > 0)
        ranked = [rated[(i, label)] for i in ids.split(" ") if (i, label) in rated]
        if positives == 0:
            continue
        hits, total = 0, 0.0
        for rank, score in enumerate(ranked, start=1):
            if score > 0:
                hits += 1
                total += hits / rank
        average_precisions.append(total / positives)
    return len(lines), float(np.mean(average_precisions))


def test_segment_eval_inference_scores_the_submission_as_brute_force(workflow):
    num_classes, expected = brute_force_segment_map(workflow["submission"], workflow["test"])
    match = re.search(r"Num classes: (\d+) \| mAP@100000: ([0-9.]+)", workflow["scored"])
    assert int(match.group(1)) == num_classes
    assert float(match.group(2)) == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------------------------------
# Whitelist and top lists.


def test_whitelist_from_an_http_url(tmp_path):
    (tmp_path / "ids.csv").write_text("Index\n5\n2\n5\n")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *unused):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/ids.csv"
        assert segment_submission.whitelist(url, 10).tolist() == [2, 5]
        with pytest.raises(UserError, match="cannot be read"):
            segment_submission.whitelist(url.replace("ids", "none"), 10)
    finally:
        server.shutdown()


def test_whitelist_errors_name_the_flag(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("Index\n5\n3862\n")
    with pytest.raises(UserError, match=r"class id 3862 is outside the model's \[0, 3862\)"):
        segment_submission.whitelist(str(path), 3862)
    path.write_text("Index\n")
    with pytest.raises(UserError, match="lists no class id"):
        segment_submission.whitelist(str(path), 3862)


def test_top_segments_stay_bounded_and_equal_a_full_sort():
    rng = np.random.default_rng(3)
    top = segment_submission.TopSegments(max_per_class=50, min_buffer=10000)
    by_class = {}  # class -> [(-score, position in the input, segment id)]
    largest = 0
    for batch in range(40):
        ids = np.array([f"v{batch}:{i * 5}".encode() for i in range(3000)])
        classes = np.stack([rng.choice(30, 10, replace=False) for _ in ids])
        # Rounded scores, so ties are many and the input order must break them.
        scores = np.round(rng.random(classes.shape), 2).astype(np.float32)
        top.add(ids, classes, scores)
        largest = max(largest, top.size())
        for segment_id, row_classes, row_scores in zip(ids, classes, scores):
            for label, score in zip(row_classes, row_scores):
                entries = by_class.setdefault(int(label), [])
                entries.append((-float(score), len(entries), segment_id.decode()))
    # What is kept (30 classes x 50) plus at most a buffer's worth and one batch.
    assert largest <= 30 * 50 + 10000 + 30000
    expected = [
        f"{label},{' '.join(s for _, _, s in sorted(by_class[label])[:50])}\n"
        for label in sorted(by_class)
    ]
    assert list(top.lines()) == expected


# ---------------------------------------------------------------------------------------
# What segment mode refuses.


def test_segment_training_needs_frame_features_and_a_weighted_loss(sample_data, tmp_path):
    pattern = f"{sample_data}/segment/validate*.tfrecord"
    base = dict(train_data_pattern=pattern, train_dir=str(tmp_path), segment_labels=True)
    with pytest.raises(UserError, match="segment_labels needs a frame-level model"):
        train.train(train.TrainConfig(**base))
    frames = dict(frame_features=True, feature_names="rgb,audio", feature_sizes="1024,128")
    with pytest.raises(UserError, match="label_loss=SoftmaxLoss cannot weight its terms"):
        train.train(
            train.TrainConfig(
                **base, **frames, model="FrameLevelLogisticModel", label_loss="SoftmaxLoss"
            )
        )
    assert not os.listdir(tmp_path)


def test_segment_predictions_without_a_segment_model_say_what_to_run(sample_data, tmp_path):
    train_dir = str(tmp_path / "model")
    train_config = train.TrainConfig(
        train_data_pattern=f"{sample_data}/frame/train0000.tfrecord",
        train_dir=train_dir,
        frame_features=True,
        feature_names="rgb,audio",
        feature_sizes="1024,128",
        model="FrameLevelLogisticModel",
        max_steps=1,
        batch_size=8,
    )
    train.train(train_config)
    with pytest.raises(UserError) as error:
        inference.main(
            inference.InferenceConfig(
                train_dir=train_dir,
                input_data_pattern=f"{sample_data}/segment/test*.tfrecord",
                output_file=str(tmp_path / "out.csv"),
                segment_labels=True,
            )
        )
    assert str(error.value) == (
        f"Cannot find {train_dir}/segment_inference_model: this model has no segment model. "
        f"Fine-tune it with train.py --segment_labels --train_dir={train_dir} on "
        f"segment-rated files, then run eval.py --segment_labels --train_dir={train_dir} on "
        "segment-rated files."
    )
    assert not os.path.exists(tmp_path / "out.csv")
