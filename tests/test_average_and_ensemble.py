"""average_checkpoints.py and ensemble_predictions.py: the mean of checkpoints, of predictions."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf
from conftest import error_line, one_error_line, run_script

import average_checkpoints
import ensemble_predictions
import export_model
import inference
import models
import score_predictions
import train
import trained_model

VIDEO = {"feature_names": "mean_rgb,mean_audio", "feature_sizes": "1024,128"}
AVERAGED_STEPS = (20, 30, 40)  # The last 3 of the checkpoints at 10, 20, 30, 40.


def model_variables(checkpoint_path: str) -> dict[str, np.ndarray]:
    """Returns the model's variables in a checkpoint, by their checkpoint key."""
    reader = tf.train.load_checkpoint(checkpoint_path)
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.startswith("model/")
    }


def rows_of(predictions: ensemble_predictions.Predictions) -> list[dict[int, float]]:
    """Returns each row's {class: score}, in the file's order."""
    ends = np.cumsum(predictions.pairs_per_video)[:-1]
    return [
        dict(zip(classes.tolist(), scores.tolist(), strict=True))
        for classes, scores in zip(
            np.split(predictions.classes, ends), np.split(predictions.scores, ends), strict=True
        )
    ]


def checkpoint_keys(checkpoint_path: str) -> set[str]:
    return set(tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map())


def assert_mean_of(output_path: str, input_paths: list[str]) -> dict[str, np.ndarray]:
    """Asserts every model variable of the output is the float64 mean of the inputs'."""
    inputs = [model_variables(path) for path in input_paths]
    output = model_variables(output_path)
    assert set(output) == set(inputs[0])  # Every model variable, and no other.
    for name, value in output.items():
        mean = sum(variables[name].astype(np.float64) for variables in inputs) / len(inputs)
        np.testing.assert_array_equal(value, mean.astype(value.dtype), err_msg=name)
    return output


@pytest.fixture(scope="module")
def trained(sample_data, tmp_path_factory) -> str:
    """A LogisticModel trained 40 steps in this process, checkpointed every 10 steps."""
    train_dir = str(tmp_path_factory.mktemp("trained"))
    train.train(
        train.TrainConfig(
            train_dir=train_dir,
            train_data_pattern=f"{sample_data}/video/train*.tfrecord",
            batch_size=32,
            max_steps=40,
            export_model_steps=10,
            **VIDEO,
        )
    )
    return train_dir


@pytest.fixture(scope="module")
def averaged(trained, tmp_path_factory) -> str:
    """The mean of the trained model's last 3 checkpoints, in a new training directory."""
    output_dir = str(tmp_path_factory.mktemp("averaged") / "model")
    average_checkpoints.main(
        average_checkpoints.AverageConfig(
            train_dir=trained, num_checkpoints=len(AVERAGED_STEPS), output_dir=output_dir
        )
    )
    return output_dir


def test_averaged_checkpoint_holds_the_mean_of_each_model_variable(trained, averaged):
    state = tf.train.get_checkpoint_state(trained)
    assert [path.rsplit("-", 1)[1] for path in state.all_model_checkpoint_paths] == [
        "10",
        "20",
        "30",
        "40",
    ]
    output_path = tf.train.latest_checkpoint(averaged)
    assert output_path == os.path.join(averaged, f"{train.CHECKPOINT_PREFIX}-40")
    assert len(tf.train.get_checkpoint_state(averaged).all_model_checkpoint_paths) == 1
    input_paths = [f"{trained}/{train.CHECKPOINT_PREFIX}-{step}" for step in AVERAGED_STEPS]
    output = assert_mean_of(output_path, input_paths)
    first, last = model_variables(input_paths[0]), model_variables(input_paths[-1])
    assert all(not np.array_equal(first[name], last[name]) for name in output)  # Not vacuous.
    assert not any(key.startswith("optimizer/") for key in checkpoint_keys(output_path))
    with open(trained_model.model_flags_path(averaged)) as copied:
        assert copied.read() == open(trained_model.model_flags_path(trained)).read()
    assert sorted(os.listdir(os.path.dirname(averaged))) == ["model"]  # No temporary left.


@pytest.mark.fast
def test_batch_norm_statistics_are_averaged_and_weight_averages_ignored(tmp_path):
    # Checkpoints of random weights, no training: a small DbofModel with batch norm, and
    # the weight averages of train.py --ema_decay, which the raw weights' mean ignores.
    train_dir, output_dir = str(tmp_path / "train"), str(tmp_path / "averaged")
    small = {"dbof_cluster_size": 8, "dbof_hidden_size": 8, "iterations": 4}
    config = train.TrainConfig(
        model="DbofModel",
        frame_features=True,
        feature_names="rgb,audio",
        feature_sizes="1024,128",
        model_hyperparameters={**models.default_hyperparameters(), **small},
    )
    tf.io.gfile.makedirs(train_dir)
    trained_model.write_or_check_model_flags(train_dir, config.model_flags())
    model, _, _ = trained_model.model_from_flags(train_dir)
    weight_average = trained_model.WeightAverage(model.trainable_variables)
    objects = {"model": model, trained_model.WEIGHT_AVERAGE_KEY: weight_average}
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(**objects),
        train_dir,
        max_to_keep=None,
        checkpoint_name=train.CHECKPOINT_PREFIX,
    )
    rng = np.random.default_rng(0)
    for step in (1, 2, 3):
        for weight in model.weights + weight_average.averages:
            weight.assign(rng.random(weight.shape).astype(np.float32))
        manager.save(checkpoint_number=step)
    average_checkpoints.main(
        average_checkpoints.AverageConfig(
            train_dir=train_dir, num_checkpoints=2, output_dir=output_dir
        )
    )
    output = assert_mean_of(
        f"{output_dir}/{train.CHECKPOINT_PREFIX}-3",
        [f"{train_dir}/{train.CHECKPOINT_PREFIX}-{step}" for step in (2, 3)],
    )
    assert not trained_model.holds_weight_averages(f"{output_dir}/{train.CHECKPOINT_PREFIX}-3")
    statistics = [name for name in output if "moving_mean" in name or "moving_variance" in name]
    non_trainable = [weight for weight in model.weights if not weight.trainable]
    assert len(statistics) == len(non_trainable) >= 4  # input_bn, cluster_bn, ...


@pytest.fixture(scope="module")
def evaluated(averaged, sample_data):
    """eval.py run as a user runs it on the averaged directory (it writes inference_model)."""
    return run_script(
        "eval.py",
        f"--eval_data_pattern={sample_data}/video/validate*.tfrecord",
        f"--train_dir={averaged}",
        "--batch_size=64",
        "--run_once",
    )


def test_eval_py_evaluates_the_averaged_directory(evaluated, averaged):
    assert re.search(r"epoch/eval number 40 \| Avg_Hit@1: .* GAP: 0\.\d+", evaluated.stderr)
    assert os.path.exists(
        os.path.join(trained_model.inference_model_path(averaged), "saved_model.pb")
    )


def test_training_refuses_to_resume_from_an_averaged_directory(sample_data, averaged):
    config = train.TrainConfig(
        train_dir=averaged,
        train_data_pattern=f"{sample_data}/video/train*.tfrecord",
        batch_size=32,
        max_steps=50,
        **VIDEO,
    )
    assert error_line(train.train, config).endswith(
        "holds model weights only (as average_checkpoints.py writes them): evaluate, export "
        "or predict with it, and resume training from the --train_dir it was averaged from."
    )


@pytest.fixture(scope="module")
def inference_outputs(trained, averaged, evaluated, sample_data, tmp_path_factory):
    """predictions.csv of the last checkpoint and of the averaged one, on the test split."""
    output_dir = tmp_path_factory.mktemp("predictions")
    export_model.main(
        export_model.ExportConfig(
            train_dir=trained, output_dir=trained_model.inference_model_path(trained)
        )
    )
    paths = []
    for name, train_dir in (("last", trained), ("averaged", averaged)):
        paths.append(str(output_dir / f"{name}.csv"))
        inference.main(
            inference.InferenceConfig(
                train_dir=train_dir,
                input_data_pattern=f"{sample_data}/video/test*.tfrecord",
                output_file=paths[-1],
            )
        )
    return paths


def test_ensemble_of_two_inference_outputs_is_scored_by_score_predictions(
    inference_outputs, sample_data, tmp_path, capsys
):
    output_file = str(tmp_path / "ensemble.csv")
    ensemble_predictions.main(
        ensemble_predictions.EnsembleConfig(
            input_files=inference_outputs, weights=["1", "3"], output_file=output_file
        )
    )
    last, averaged = (ensemble_predictions.read_predictions(path) for path in inference_outputs)
    result = ensemble_predictions.read_predictions(output_file)
    assert result.video_ids == last.video_ids == averaged.video_ids
    assert (result.pairs_per_video == 20).all()
    for kept, last_row, averaged_row in zip(
        rows_of(result), rows_of(last), rows_of(averaged), strict=True
    ):
        expected = {
            class_id: (last_row.get(class_id, 0) + 3 * averaged_row.get(class_id, 0)) / 4
            for class_id in {**last_row, **averaged_row}
        }
        # %g keeps 6 significant digits: off by at most half a unit of the 6th, 5e-6.
        np.testing.assert_allclose(
            list(kept.values()), [expected[class_id] for class_id in kept], rtol=5e-6
        )
        left_out = [score for class_id, score in expected.items() if class_id not in kept]
        assert max(left_out, default=0) <= min(kept.values()) * (1 + 5e-6)
    score_predictions.main(
        score_predictions.ScoreConfig(
            predictions_file=output_file, data_pattern=f"{sample_data}/video/test*.tfrecord"
        )
    )
    assert re.fullmatch(
        rf"GAP of {re.escape(output_file)} on 100 videos: 0\.\d{{4}}\n", capsys.readouterr().out
    )


# ---------------------------------------------------------------------------------------
# Ensembles of hand-written files.

FILES = {
    "a.csv": 'VideoId,LabelConfidencePairs\nv1,3 0.9 1 0.5 7 0.25\nv2,2 0.8 4 0.1\n"v,3",5 0.6\n',
    "b.csv": "VideoId,LabelConfidencePairs\nv2,4 0.7 2 0.2\nv1,1 0.6 3 0.3 9 0.05\nv4,8 0.4\n",
    "c.csv": "VideoId,LabelConfidencePairs\nv1,7 1 3 0.125\nv5,6 0.5 2 0.5\n\nv6,\n",
}


def write_files(directory, files: dict[str, str]) -> list[str]:
    for name, text in files.items():
        (directory / name).write_text(text)
    return [str(directory / name) for name in files]


def reference_ensemble(texts: list[str], weights: list[float], top_k: int) -> str:
    """The weighted mean in plain Python, written as inference.py writes its CSV."""
    tables = []
    for text in texts:
        table = {}
        for line in text.splitlines()[1:]:
            if line:
                video_id, pairs = line.rsplit(",", 1)
                values = pairs.split()
                table[video_id.strip('"')] = dict(
                    zip(map(int, values[0::2]), map(float, values[1::2]), strict=True)
                )
        tables.append(table)
    video_ids = list(dict.fromkeys(video_id for table in tables for video_id in table))
    lines = ["VideoId,LabelConfidencePairs"]
    for video_id in video_ids:
        rows = [table.get(video_id, {}) for table in tables]
        classes = {class_id for row in rows for class_id in row}
        scores = {
            class_id: sum(w * row.get(class_id, 0.0) for w, row in zip(weights, rows))
            / sum(weights)
            for class_id in classes
        }
        ranked = sorted(scores, key=lambda class_id: (-scores[class_id], class_id))[:top_k]
        quoted = f'"{video_id}"' if "," in video_id else video_id
        lines.append(quoted + "," + " ".join(f"{c} {scores[c]:g}" for c in ranked))
    return "\n".join(lines) + "\n"


@pytest.mark.fast
@pytest.mark.parametrize(
    "weights,top_k", [((), 20), (("2", "1", "0.5"), 3), (("0", "1", "3"), 2), (("1", "0", "0"), 1)]
)
def test_ensemble_is_the_weighted_mean_missing_classes_and_videos_counting_zero(
    tmp_path, weights, top_k
):
    paths = write_files(tmp_path, FILES)
    output_file = tmp_path / "ensemble.csv"
    ensemble_predictions.main(
        ensemble_predictions.EnsembleConfig(
            input_files=paths, weights=list(weights), output_file=str(output_file), top_k=top_k
        )
    )
    numbers = [float(weight) for weight in weights] if weights else [1.0] * len(FILES)
    expected = reference_ensemble(list(FILES.values()), numbers, top_k)
    assert output_file.read_text() == expected
    # v1 with weights 2, 1, 0.5 (top 3): 3: (1.8 + 0.3 + 0.0625)/3.5, 1: (1 + 0.6)/3.5, ...;
    # v5's tie of classes 2 and 6 ranks 2 first.
    assert [line.split(",")[0] for line in expected.splitlines()] == [
        "VideoId",
        "v1",
        "v2",
        '"v',
        "v4",
        "v5",
        "v6",
    ]
    assert expected.splitlines()[-2].startswith("v5,2 ")
    assert expected.splitlines()[-1] == "v6,"  # Listed without classes.
    assert [name for name in os.listdir(tmp_path) if ".tmp" in name] == []


@pytest.mark.fast
@pytest.mark.parametrize("text", [FILES["a.csv"], "VideoId,LabelConfidencePairs\nv1,\nv2,\n"])
def test_ensemble_of_one_file_reproduces_it_byte_for_byte(tmp_path, text):
    (path,) = write_files(tmp_path, {"a.csv": text})
    output_file = tmp_path / "same.csv"
    ensemble_predictions.main(
        ensemble_predictions.EnsembleConfig(input_files=[path], output_file=str(output_file))
    )
    assert output_file.read_text() == text


@pytest.mark.fast
def test_scores_are_formatted_as_inference_py_formats_them():
    scores = np.array(
        [[0.9015431, 0.0645103, 1e-05, 1.0, 0.5, 3.3e-7, 0.99999994, 0.12345678]], np.float32
    )
    outputs = {
        "video_id": tf.constant(["v"]),
        "class_indexes": tf.constant([list(range(scores.shape[1]))]),
        "predictions": tf.constant(scores),
    }
    written = inference.formatted_batch(outputs, scores.shape[1])["pairs"].numpy()[0].decode()
    assert (
        ensemble_predictions.row_text(list(range(scores.shape[1])), scores[0].tolist()) == written
    )


ENSEMBLE_ERRORS = [
    ({"weights": ["1"]}, "ERROR: --weights has 1 values for 2 --input_files; give one weight"),
    ({"weights": ["1", "-1"]}, "ERROR: --weights=1,-1: each weight must be a finite number, 0 or"),
    ({"weights": ["1", "nan"]}, "ERROR: --weights=1,nan: each weight must be a finite number"),
    ({"weights": ["0", "0"]}, "ERROR: --weights are all 0: give at least one file a positive"),
    ({"weights": ["1", "x"]}, "ERROR: --weights=1,x: expected comma-separated numbers."),
    ({"input_files": []}, "ERROR: --input_files is required: the comma-separated predictions"),
    ({"output_file": ""}, "ERROR: --output_file is required: the CSV file to write."),
    ({"output_file": "/no/such/dir/e.csv"}, "ERROR: --output_file='/no/such/dir/e.csv': direct"),
]

MALFORMED = [
    ("v1,3 0.9 1\n", "line 2: expected '<class> <score>' pairs, found 3 values."),
    ("v1,3 0.9\nv2,x 0.5\n", "line 3: x 0.5 is not a class id (an integer from 0 to 2147483647)"),
    ("v1,-3 0.5\n", "line 2: -3 0.5 is not a class id (an integer from 0 to 2147483647) and"),
    ("v1,3 0.5 2147483648 0.1\n", "line 2: 2147483648 0.1 is not a class id (an integer from"),
    ("v1,3 inf\n", "line 2: 3 inf is not a class id (an integer from 0 to 2147483647) and a"),
    ("v1,3 0.5 3 0.4\n", "line 2: class 3 is listed twice."),
    ("v1,3 0.9\nv2,1 0.5\n\nv1,2 0.1\n", "line 5: video 'v1' again (first on line 2)."),
    ("v1,3 0.9,7\n", "line 2: expected 2 fields, VideoId,LabelConfidencePairs; found 3."),
    ('"v1,3 0.9\n', "line 2: unexpected end of data."),
]


@pytest.mark.fast
@pytest.mark.parametrize("settings,expected", ENSEMBLE_ERRORS)
def test_ensemble_settings_errors_are_one_line_naming_the_flag(tmp_path, settings, expected):
    paths = write_files(tmp_path, {"a.csv": FILES["a.csv"], "b.csv": FILES["b.csv"]})
    defaults = {"input_files": paths, "output_file": str(tmp_path / "e.csv")}
    config = ensemble_predictions.EnsembleConfig(**{**defaults, **settings})
    assert error_line(ensemble_predictions.main, config).startswith(expected)
    assert not (tmp_path / "e.csv").exists()


@pytest.mark.fast
@pytest.mark.parametrize("rows,expected", MALFORMED)
def test_malformed_predictions_file_is_one_line_naming_file_and_line(tmp_path, rows, expected):
    paths = write_files(
        tmp_path, {"a.csv": FILES["a.csv"], "bad.csv": "VideoId,LabelConfidencePairs\n" + rows}
    )
    config = ensemble_predictions.EnsembleConfig(
        input_files=paths, output_file=str(tmp_path / "e.csv")
    )
    assert error_line(ensemble_predictions.main, config).startswith(
        f"ERROR: {paths[1]}, {expected}"
    )


@pytest.mark.fast
def test_missing_or_headerless_predictions_file_is_one_line(tmp_path):
    paths = write_files(tmp_path, {"a.csv": FILES["a.csv"], "b.csv": "v1,3 0.5\n"})
    missing = str(tmp_path / "missing.csv")
    config = ensemble_predictions.EnsembleConfig(
        input_files=[paths[0], missing], output_file=str(tmp_path / "e.csv")
    )
    assert error_line(ensemble_predictions.main, config) == (
        f"ERROR: --input_files: {missing}: no such file."
    )
    config = ensemble_predictions.EnsembleConfig(
        input_files=paths, output_file=str(tmp_path / "e.csv")
    )
    assert error_line(ensemble_predictions.main, config) == (
        f"ERROR: {paths[1]}, line 1: expected the header VideoId,LabelConfidencePairs."
    )


def test_ensemble_predictions_py_reports_a_malformed_line_as_one_error_line(tmp_path):
    paths = write_files(
        tmp_path, {"a.csv": FILES["a.csv"], "bad.csv": FILES["b.csv"] + "v7,1 0.5 2\n"}
    )
    result = run_script(
        "ensemble_predictions.py",
        f"--input_files={','.join(paths)}",
        f"--output_file={tmp_path / 'e.csv'}",
        check=False,
    )
    assert one_error_line(result) == (
        f"ERROR: {paths[1]}, line 5: expected '<class> <score>' pairs, found 3 values."
    )


# ---------------------------------------------------------------------------------------
# Averaging errors.


@pytest.mark.fast
def test_average_settings_errors_are_one_line_naming_the_flag(tmp_path):
    train_dir = tmp_path / "train"
    train_dir.mkdir()

    def error(**settings) -> str:
        config = average_checkpoints.AverageConfig(
            **{"train_dir": str(train_dir), "output_dir": str(tmp_path / "out"), **settings}
        )
        return error_line(average_checkpoints.main, config)

    assert error() == f"ERROR: No checkpoint found in --train_dir={train_dir}."
    assert error(output_dir=f"{train_dir}/") == (
        "ERROR: --output_dir must differ from --train_dir: the averaged checkpoint would be "
        "mixed with the ones it averages."
    )
    assert error(output_dir="").startswith("ERROR: --output_dir is required")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert error(output_dir=str(tmp_path / "full")) == (
        f"ERROR: --output_dir={tmp_path / 'full'} exists and is not empty; remove it or "
        "choose a new directory."
    )
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "out").exists()


def test_average_checkpoints_py_refuses_more_checkpoints_than_there_are(trained, tmp_path):
    result = run_script(
        "average_checkpoints.py",
        f"--train_dir={trained}",
        "--num_checkpoints=9",
        f"--output_dir={tmp_path / 'out'}",
        check=False,
    )
    assert one_error_line(result) == (
        f"ERROR: --num_checkpoints=9, but --train_dir={trained} holds only 4 checkpoints; "
        "pass --num_checkpoints=4 or fewer."
    )
    assert not (tmp_path / "out").exists()
