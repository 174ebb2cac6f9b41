"""The whole job in this process on tiny files: sample data, train, eval, predictions.

The fast tier (`make test-fast`): the same functions the scripts' `main` calls, so a change
gets a signal in well under a minute; the slow tier runs the scripts as a user does.
"""

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import summary_events

import cli
import eval as eval_script
import inference
import make_sample_data
import readers
import summaries
import train
import trained_model

pytestmark = pytest.mark.fast

VIDEO = {"feature_names": "mean_rgb,mean_audio", "feature_sizes": "1024,128"}
FRAME = {"feature_names": "rgb,audio", "feature_sizes": "1024,128", "frame_features": True}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> str:
    """64/32/32 videos in both formats, keyed `video_id` as the 2017 files are."""
    output_dir = str(tmp_path_factory.mktemp("tiny_data"))
    make_sample_data.main(
        make_sample_data.SampleDataConfig(
            output_dir=output_dir,
            num_train_videos=64,
            num_validate_videos=32,
            num_test_videos=32,
            num_shards=2,
            mean_frames=8,
            id_key="video_id",
        )
    )
    return output_dir


def train_and_evaluate(data_dir: str, train_dir: str, data_format: str, **settings) -> None:
    """Trains 6 steps, evaluates once and writes predictions.csv, all in this process."""
    train.train(
        train.TrainConfig(
            train_dir=train_dir,
            train_data_pattern=f"{data_dir}/{data_format}/train*.tfrecord",
            batch_size=16,
            max_steps=6,
            id_feature="video_id",
            **settings,
        )
    )
    eval_script.evaluate(
        eval_script.EvalConfig(
            train_dir=train_dir,
            eval_data_pattern=f"{data_dir}/{data_format}/validate*.tfrecord",
            batch_size=16,
            run_once=True,
        )
    )
    inference.main(
        inference.InferenceConfig(
            train_dir=train_dir,
            input_data_pattern=f"{data_dir}/{data_format}/test*.tfrecord",
            output_file=os.path.join(train_dir, "predictions.csv"),
        )
    )


def test_video_level_job_on_2017_keyed_files_records_the_id_key(tiny_data, tmp_path):
    train_and_evaluate(tiny_data, str(tmp_path), "video", model="LogisticModel", **VIDEO)
    model_flags = json.loads((tmp_path / "model_flags.json").read_text())
    assert model_flags["id_feature"] == "video_id"
    assert model_flags["moe_num_mixtures"] == 2  # Every hyperparameter, at its default.
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-6")
    table = pd.read_csv(tmp_path / "predictions.csv", dtype=str, keep_default_na=False)
    reader = readers.create_reader(False, **VIDEO, id_feature="video_id")
    ids = [
        video_id.decode()
        for batch in reader.get_dataset(f"{tiny_data}/video/test*.tfrecord", 32)
        for video_id in batch["video_ids"].numpy()
    ]
    assert list(table["VideoId"]) == ids and len(ids) == 32
    assert all(len(pairs.split()) == 40 for pairs in table["LabelConfidencePairs"])


def test_frame_level_job_evaluates_the_checkpoint_it_wrote(tiny_data, tmp_path):
    train_and_evaluate(tiny_data, str(tmp_path), "frame", model="FrameLevelLogisticModel", **FRAME)
    model, reader, _ = trained_model.restored_model(str(tmp_path))
    assert reader.id_feature == "video_id"
    served = tf.saved_model.load(trained_model.inference_model_path(str(tmp_path)))
    records = [
        record.numpy()
        for record in tf.data.TFRecordDataset(
            readers.list_files(f"{tiny_data}/frame/test*.tfrecord")
        )
    ]
    outputs = served.signatures["serving_default"](example_bytes=tf.constant(records))
    table = pd.read_csv(tmp_path / "predictions.csv", dtype=str, keep_default_na=False)
    assert list(table["VideoId"]) == [video_id.decode() for video_id in outputs["video_id"].numpy()]
    first_classes = [int(pairs.split()[0]) for pairs in table["LabelConfidencePairs"]]
    np.testing.assert_array_equal(first_classes, outputs["class_indexes"][:, 0].numpy())


def test_resuming_with_other_model_flags_is_the_original_refusal(tiny_data, tmp_path):
    config = train.TrainConfig(
        train_dir=str(tmp_path),
        train_data_pattern=f"{tiny_data}/video/train*.tfrecord",
        batch_size=16,
        max_steps=2,
        id_feature="video_id",
        **VIDEO,
    )
    assert train.train(config) == 2
    with pytest.raises(trained_model.ModelFlagsMismatchError) as mismatch:
        train.train(dataclasses.replace(config, model="MoeModel", max_steps=4))
    assert cli.one_line(mismatch.value).endswith(
        "Please delete the file, change --train_dir, or pass flag --start_new_model"
    )
    assert mismatch.value.details[0].startswith('Ran model with flags: {"model": "MoeModel"')
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-2")


def test_model_flags_written_before_id_feature_was_recorded_count_as_id(tmp_path):
    flags_of_today = train.TrainConfig(**VIDEO).model_flags()
    older = {key: value for key, value in flags_of_today.items() if key != "id_feature"}
    (tmp_path / "model_flags.json").write_text(json.dumps(older))
    trained_model.write_or_check_model_flags(str(tmp_path), flags_of_today)  # Resumes.
    assert trained_model.read_model_flags(str(tmp_path), "")["id_feature"] == "id"
    with pytest.raises(trained_model.ModelFlagsMismatchError):
        trained_model.write_or_check_model_flags(
            str(tmp_path), {**flags_of_today, "id_feature": "video_id"}
        )


def test_model_flags_written_before_a_hyperparameter_existed_resume_at_its_default(tmp_path):
    flags_of_today = train.TrainConfig(**VIDEO).model_flags()
    older = {key: value for key, value in flags_of_today.items() if key != "moe_prob_gating"}
    (tmp_path / "model_flags.json").write_text(json.dumps(older))
    trained_model.write_or_check_model_flags(str(tmp_path), flags_of_today)  # Resumes.
    with pytest.raises(trained_model.ModelFlagsMismatchError):
        trained_model.write_or_check_model_flags(
            str(tmp_path), {**flags_of_today, "moe_prob_gating": True}
        )


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).normal(size=(40, 30)).astype(np.float32),
        np.random.default_rng(1).integers(0, 256, 5000).astype(np.uint8),
        np.full(7, 3.0, np.float32),
    ],
)
def test_histograms_have_tf_summary_histograms_buckets(values, tmp_path):
    buckets = summaries.histogram_buckets(values).numpy()
    low, high = float(values.min()), float(values.max())
    if low < high:
        counts, edges = np.histogram(values.astype(np.float64), bins=30, range=(low, high))
        np.testing.assert_array_equal(buckets[:, 2], counts)
        np.testing.assert_allclose(buckets[:, 0], edges[:-1])
        assert buckets[-1, 1] == high
    else:  # All in the last bucket, as tf.summary.histogram puts them.
        np.testing.assert_array_equal(buckets[:, 2], [0] * 29 + [values.size])
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default(step=1):
        summaries.write_histogram("model/input_raw", values)
    writer.flush()
    events = summary_events(tmp_path)
    written = tf.make_ndarray(events.Tensors("model/input_raw")[0].tensor_proto)
    np.testing.assert_array_equal(written, buckets)
    assert events.SummaryMetadata("model/input_raw").plugin_data.plugin_name == "histograms"
