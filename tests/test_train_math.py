"""The training maths on tiny hand-set weights, against NumPy written here."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import cli
import frame_level_models
import losses
import models
import readers
import train
import trained_model
import video_level_models
from errors import UserError

pytestmark = pytest.mark.fast


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_moe_with_two_classes_matches_numpy_with_the_class_major_layout():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    model = video_level_models.MoeModel(vocab_size=2, moe_num_mixtures=2)
    model(x)
    gates = rng.normal(size=(4, 2 * 3)).astype(np.float32)
    experts = rng.normal(size=(4, 2 * 2)).astype(np.float32)
    expert_bias = rng.normal(size=(2 * 2,)).astype(np.float32)
    model.gates.kernel.assign(gates)
    model.experts.kernel.assign(experts)
    model.experts.bias.assign(expert_bias)
    assert len(model.gates.weights) == 1  # The gates have no bias.

    got = model(x)["predictions"].numpy()
    gate_logits, expert_logits = x @ gates, x @ experts + expert_bias
    expected = np.zeros((3, 2))
    for c in range(2):  # Class c owns gate columns 3c..3c+2 and expert columns 2c..2c+1.
        gate = softmax(gate_logits[:, 3 * c : 3 * c + 3])
        expert = sigmoid(expert_logits[:, 2 * c : 2 * c + 2])
        expected[:, c] = (gate[:, :2] * expert).sum(axis=1)  # The dummy expert adds 0.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_logistic_model_is_sigmoid_of_an_affine_map():
    x = np.array([[1.0, 2.0], [0.5, -1.0]], np.float32)
    model = video_level_models.LogisticModel(vocab_size=3)
    model(x)
    weights = np.array([[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]], np.float32)
    bias = np.array([0.0, 0.1, -0.1], np.float32)
    model.logistic.kernel.assign(weights)
    model.logistic.bias.assign(bias)
    np.testing.assert_allclose(
        model(x)["predictions"].numpy(), sigmoid(x @ weights + bias), rtol=1e-6
    )


def test_new_models_start_with_glorot_weights_and_zero_biases():
    model = video_level_models.MoeModel(vocab_size=50, moe_num_mixtures=2)
    model(np.zeros((1, 200), np.float32))
    np.testing.assert_array_equal(model.experts.bias.numpy(), 0.0)
    limit = np.sqrt(6.0 / (200 + 150))  # Glorot uniform over the gates' fan in/out.
    gates = model.gates.kernel.numpy()
    assert np.abs(gates).max() <= limit and np.abs(gates).max() > 0.9 * limit


def test_regularization_loss_is_half_lambda_sum_of_squared_kernels():
    model = video_level_models.MoeModel(vocab_size=3, moe_num_mixtures=2, moe_l2=0.5)
    model(np.ones((1, 4), np.float32))
    kernels = [model.gates.kernel.numpy(), model.experts.kernel.numpy()]
    expected = 0.5 * 0.5 * sum((k.astype(np.float64) ** 2).sum() for k in kernels)
    assert float(tf.add_n(model.losses)) == pytest.approx(expected, rel=1e-5)


PREDICTIONS = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.4]], np.float32)
LABELS = np.array([[1, 0, 1], [0, 0, 1]], np.float32)


def test_cross_entropy_loss_on_known_values():
    eps = 1e-5
    per_class = -(LABELS * np.log(PREDICTIONS + eps) + (1 - LABELS) * np.log(1 - PREDICTIONS + eps))
    expected = per_class.sum(axis=1).mean()
    got = losses.CrossEntropyLoss().calculate_loss(PREDICTIONS, LABELS)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_loss_weights_each_term():
    weights = np.array([[1, 0, 1], [1, 1, 0]], np.float32)
    eps = 1e-5
    per_class = -(LABELS * np.log(PREDICTIONS + eps) + (1 - LABELS) * np.log(1 - PREDICTIONS + eps))
    got = losses.CrossEntropyLoss().calculate_loss(PREDICTIONS, LABELS, label_weights=weights)
    assert float(got) == pytest.approx((per_class * weights).sum(axis=1).mean(), rel=1e-6)


def test_hinge_loss_on_known_values():
    expected = np.maximum(0.0, 1.0 - (2 * LABELS - 1) * PREDICTIONS).sum(axis=1).mean()
    assert float(losses.HingeLoss().calculate_loss(PREDICTIONS, LABELS)) == pytest.approx(
        expected, rel=1e-6
    )
    assert float(losses.HingeLoss().calculate_loss(PREDICTIONS, LABELS, b=0.5)) == pytest.approx(
        np.maximum(0.0, 0.5 - (2 * LABELS - 1) * PREDICTIONS).sum(axis=1).mean(), rel=1e-6
    )


def test_softmax_loss_treats_predictions_as_logits_and_normalises_labels():
    labels = np.array([[1, 0, 1], [0, 0, 0]], np.float32)  # A row without labels adds 0.
    normalised = labels / np.maximum(labels.sum(axis=1, keepdims=True), 1e-7)
    expected = (-(normalised * np.log(softmax(PREDICTIONS.astype(np.float64)))).sum(axis=1)).mean()
    got = losses.SoftmaxLoss().calculate_loss(PREDICTIONS, labels)
    assert float(got) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "examples,expected_exponent",
    [
        (0, 0),
        (3_999_999, 0),
        (4_000_000, 1),
        (12_500_000, 3),
    ],
)
def test_learning_rate_decays_once_per_decay_examples_of_the_global_batch(
    examples, expected_exponent
):
    global_batch = 500
    schedule = train.StaircaseDecay(0.01, 0.95, 4_000_000, global_batch)
    step = examples // global_batch
    expected = 0.01 * 0.95 ** np.floor(step * global_batch / 4_000_000)
    assert np.floor(step * global_batch / 4_000_000) == expected_exponent
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)


def test_gradients_are_clipped_per_tensor_not_by_global_norm():
    big = tf.constant([3.0, 4.0])  # Norm 5.
    small = tf.constant([0.3, 0.4])  # Norm 0.5.
    clipped = train.clipped_gradients([big, small, None], 1.0)
    np.testing.assert_allclose(clipped[0].numpy(), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(clipped[1].numpy(), [0.3, 0.4], rtol=1e-6)
    assert clipped[2] is None
    unclipped = train.clipped_gradients([big], 0.0)
    np.testing.assert_array_equal(unclipped[0].numpy(), [3.0, 4.0])


def test_adam_uses_the_tf1_epsilon():
    optimizer = train.create_optimizer(train.TrainConfig(), global_batch_size=1024)
    assert optimizer.epsilon == pytest.approx(1e-8)
    assert optimizer.beta_1 == pytest.approx(0.9) and optimizer.beta_2 == pytest.approx(0.999)


def test_unknown_names_list_the_valid_ones_as_flags_on_the_command_line():
    with pytest.raises(UserError) as unknown_model:
        models.create_model("NoSuchModel", 10, {})
    assert re.match(
        "--model='NoSuchModel' is not known; choose one of.*MoeModel",
        cli.one_line(unknown_model.value),
    )
    assert str(unknown_model.value).startswith("model='NoSuchModel' is not known")
    with pytest.raises(UserError) as unknown_optimizer:
        train.create_optimizer(train.TrainConfig(optimizer="Sgd"), 10)
    assert re.match(
        "--optimizer='Sgd' is not known.*AdamOptimizer", cli.one_line(unknown_optimizer.value)
    )


def test_registry_finds_video_level_models_and_passes_hyperparameters():
    model = models.create_model("MoeModel", 7, {"moe_num_mixtures": 4, "unrelated_flag": 1})
    assert isinstance(model, video_level_models.MoeModel) and model.num_mixtures == 4
    assert {"LogisticModel", "MoeModel"} <= set(models.model_classes())


SMALL_HYPERPARAMETERS = {
    "lstm_cells": 8,
    "lstm_layers": 2,
    "dbof_cluster_size": 16,
    "dbof_hidden_size": 8,
    "iterations": 4,
    "moe_num_mixtures": 2,
    "netvlad_cluster_size": 4,
    "netvlad_hidden_size": 8,
    "fv_cluster_size": 4,
    "fv_hidden_size": 8,
    "fv_couple_weights": False,
    "gating": True,
    "gru_cells": 8,
    "nextvlad_cluster_size": 4,
    "nextvlad_hidden_size": 16,
    "mix_number": 2,
}


@pytest.mark.parametrize("name", sorted(models.model_classes()))
def test_a_checkpoint_restores_every_weight_of_every_model(name, tmp_path):
    frame_level = name in vars(frame_level_models)
    reader = (
        readers.YT8MFrameFeatureReader(max_frames=6)
        if frame_level
        else readers.YT8MAggregatedFeatureReader()
    )
    trained = models.create_built_model(name, reader, SMALL_HYPERPARAMETERS)
    path = tf.train.Checkpoint(model=trained).save(str(tmp_path / "model.ckpt"))
    fresh = models.create_built_model(name, reader, SMALL_HYPERPARAMETERS)
    trained_model.restore_weights(tf.train.Checkpoint(model=fresh), path)
    assert len(fresh.weights) == len(trained.weights) > 0
    for restored, saved in zip(fresh.weights, trained.weights):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy(), err_msg=saved.path)


class LayersInAList(models.BaseModel):
    def __init__(self, vocab_size, **unused):
        super().__init__(vocab_size)
        self.layers_in_a_list = [keras.layers.Dense(vocab_size, activation="sigmoid")]

    def create_model(self, model_input, vocab_size, **unused_params):
        return {"predictions": self.layers_in_a_list[0](model_input)}


def test_a_model_whose_weights_checkpoints_would_miss_is_refused(monkeypatch):
    monkeypatch.setitem(video_level_models.MODELS, "LayersInAList", LayersInAList)
    with pytest.raises(TypeError, match="LayersInAList: checkpoints would not save .*kernel"):
        models.create_built_model("LayersInAList", readers.YT8MAggregatedFeatureReader(), {})
