"""The challenge winners' layers and models: their maths against NumPy, and their invariances.

Each reference is written from the formulas in float64 NumPy, with the layer's own weights
read back and every batch norm set to known statistics and run in inference mode, where it
is the affine map y = γ (x − mean) / √(var + 1e-3) + β.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import frame_level_models
import losses
import model_util
import models
import video_level_models

BATCH, FRAMES, DIM, CLUSTERS = 2, 7, 6, 3
VOCAB = 5
# The winners' models pool rgb (the first 1024 features) and audio apart: 8 audio features.
MODEL_FEATURES = frame_level_models.RGB_FEATURES + 8
SMALL_MODELS = {
    "NetVLADModelLF": (
        "NetVLADModelLF",
        {
            "netvlad_cluster_size": 4,
            "netvlad_hidden_size": 8,
            "gating": True,
            "moe_prob_gating": True,
        },
    ),
    "NetRVLAD": (
        "NetVLADModelLF",
        {
            "netvlad_cluster_size": 4,
            "netvlad_hidden_size": 8,
            "lightvlad": True,
            "netvlad_relu": False,
            "gating": True,
        },
    ),
    "NetFVModelLF": (
        "NetFVModelLF",
        {"fv_cluster_size": 2, "fv_hidden_size": 8, "fv_couple_weights": False, "gating": True},
    ),
    "NetFVModelLF-coupled": (
        "NetFVModelLF",
        {"fv_cluster_size": 2, "fv_hidden_size": 8, "fv_relu": False},
    ),
    "SoftDbofModelLF": (
        "SoftDbofModelLF",
        {"dbof_cluster_size": 16, "dbof_hidden_size": 8, "softdbof_maxpool": True},
    ),
    "GatedDbofModelLF": (
        "GatedDbofModelLF",
        {
            "dbof_cluster_size": 16,
            "dbof_hidden_size": 8,
            "dbof_relu": False,
            "moe_prob_gating": True,
            "moe_prob_gating_input": "input",
        },
    ),
    "GruModel": ("GruModel", {"gru_cells": 4, "gru_layers": 2}),
    "NeXtVLADModel": (
        "NeXtVLADModel",
        {
            "nextvlad_cluster_size": 2,
            "nextvlad_hidden_size": 8,
            "groups": 2,
            "expansion": 1,
            "gating_reduction": 2,
        },
    ),
    "MixNeXtVladModel": (
        "MixNeXtVladModel",
        {
            "mix_number": 2,
            "nextvlad_cluster_size": 2,
            "nextvlad_hidden_size": 8,
            "groups": 2,
            "expansion": 1,
            "gating_reduction": 2,
            "drop_rate": 0.0,
        },
    ),
}
LATE_FUSION = ["NetVLADModelLF", "NetFVModelLF", "SoftDbofModelLF", "GatedDbofModelLF"]


def small_model(name: str, **overrides) -> models.BaseModel:
    cls, hyperparameters = SMALL_MODELS[name]
    return models.create_model(cls, VOCAB, {"iterations": 5, **hyperparameters, **overrides})


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def l2n(v, axis=-1):
    return v / np.sqrt(np.maximum(np.sum(v * v, axis=axis, keepdims=True), 1e-12))


def f64(variable):
    return np.asarray(variable.numpy(), np.float64)


def known_batch_norm(bn, rng):
    """Sets a built BN layer's statistics and scale to random values; returns its affine map."""
    size = bn.gamma.shape[0]
    mean, variance = rng.normal(size=size), rng.uniform(0.5, 2.0, size)
    gamma, beta = rng.uniform(0.5, 1.5, size), rng.normal(size=size)
    for variable, value in zip(
        (bn.moving_mean, bn.moving_variance, bn.gamma, bn.beta), (mean, variance, gamma, beta)
    ):
        variable.assign(value.astype(np.float32))
    mean, variance, gamma, beta = (
        np.asarray(value.astype(np.float32), np.float64) for value in (mean, variance, gamma, beta)
    )
    return lambda x: gamma * (x - mean) / np.sqrt(variance + 1e-3) + beta


def random_frames(rng, shape=(BATCH, FRAMES, DIM)):
    return rng.normal(size=shape).astype(np.float32)


def built(layer, *inputs):
    layer(*inputs, training=False)
    return layer


def reference_assignments(layer, cluster_bn, frames):
    """a_tk = softmax_k(BN(x_t W_a)), [batch, frames, K]."""
    return softmax(cluster_bn(np.asarray(frames, np.float64) @ f64(layer.cluster_weights)))


def flattened_dk(matrix):
    """[D, K] → the D·K vector with element (d, k) at d·K + k, written as a loop."""
    rows, columns = matrix.shape
    vector = np.empty(rows * columns)
    for d in range(rows):
        for k in range(columns):
            vector[d * columns + k] = matrix[d, k]
    return vector


# ---------------------------------------------------------------------------------------
# WILLOW's pooling layers.


def netvlad_reference(frames, assignments, centers):
    """Σ_t a_tk (x_td − c_dk) per cluster, intra-L2n over d, flattened, globally L2n."""
    frames = np.asarray(frames, np.float64)
    batch, num_frames, dim = frames.shape
    clusters = assignments.shape[2]
    out = []
    for b in range(batch):
        vlad = np.zeros((dim, clusters))
        for k in range(clusters):
            for t in range(num_frames):
                center = 0.0 if centers is None else centers[:, k]
                vlad[:, k] += assignments[b, t, k] * (frames[b, t] - center)
            vlad[:, k] = l2n(vlad[:, k])
        out.append(l2n(flattened_dk(vlad)))
    return np.stack(out)


@pytest.mark.fast
@pytest.mark.parametrize("residual", [True, False], ids=["netvlad", "netrvlad"])
def test_netvlad_is_the_normalised_sum_of_assignment_weighted_residuals(residual):
    rng = np.random.default_rng(0)
    frames = random_frames(rng)
    layer = built(model_util.NetVLAD(CLUSTERS, residual=residual), frames)
    cluster_bn = known_batch_norm(layer.cluster_bn, rng)
    assignments = reference_assignments(layer, cluster_bn, frames)
    centers = f64(layer.centers) if residual else None
    pooled = layer(frames, training=False).numpy()
    assert pooled.shape == (BATCH, DIM * CLUSTERS) and pooled.dtype == np.float32
    np.testing.assert_allclose(
        pooled, netvlad_reference(frames, assignments, centers), rtol=1e-4, atol=1e-6
    )
    # K intra-normalised columns of unit norm, then the whole vector: each column 1/√K.
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, rtol=1e-5)
    columns = np.linalg.norm(pooled.reshape(BATCH, DIM, CLUSTERS), axis=1)
    np.testing.assert_allclose(columns * np.sqrt(CLUSTERS), 1.0, rtol=1e-5)
    names = sorted(weight.name for weight in layer.trainable_weights)
    assert ("centers" in names) == residual, names


def test_netrvlad_has_no_centers_and_differs_from_netvlad_on_the_same_weights():
    rng = np.random.default_rng(1)
    frames = random_frames(rng)
    vlad = built(model_util.NetVLAD(CLUSTERS), frames)
    rvlad = built(model_util.NetVLAD(CLUSTERS, residual=False), frames)
    assert not hasattr(rvlad, "centers")
    rvlad.cluster_weights.assign(vlad.cluster_weights)
    vlad.centers.assign(np.zeros((DIM, CLUSTERS), np.float32))
    np.testing.assert_allclose(vlad(frames).numpy(), rvlad(frames).numpy(), rtol=1e-5, atol=1e-7)


def netfv_reference(frames, assignments, centers, covar_weights):
    frames = np.asarray(frames, np.float64)
    batch, num_frames, dim = frames.shape
    clusters = assignments.shape[2]
    sigma = covar_weights**2 + 1e-6
    out = []
    for b in range(batch):
        first, second = np.zeros((dim, clusters)), np.zeros((dim, clusters))
        for k in range(clusters):
            mass = assignments[b, :, k].sum()
            for t in range(num_frames):
                first[:, k] += assignments[b, t, k] * frames[b, t]
                second[:, k] += assignments[b, t, k] * (frames[b, t] - centers[:, k]) ** 2
            first[:, k] = l2n((first[:, k] - mass * centers[:, k]) / sigma[:, k])
            second[:, k] = second[:, k] / sigma[:, k] ** 2 - mass
        out.append(np.concatenate([l2n(flattened_dk(first)), l2n(flattened_dk(second))]))
    return np.stack(out)


@pytest.mark.fast
@pytest.mark.parametrize("couple_weights", [True, False], ids=["coupled", "own_centers"])
def test_netfv_is_the_first_and_second_order_fisher_statistics(couple_weights):
    rng = np.random.default_rng(2)
    frames = random_frames(rng)
    layer = built(model_util.NetFV(CLUSTERS, couple_weights, coupling_factor=0.7), frames)
    cluster_bn = known_batch_norm(layer.cluster_bn, rng)
    assignments = reference_assignments(layer, cluster_bn, frames)
    if couple_weights:
        assert not hasattr(layer, "centers")
        centers = 0.7 * f64(layer.cluster_weights)
    else:
        centers = f64(layer.centers)
    pooled = layer(frames, training=False).numpy()
    assert pooled.shape == (BATCH, 2 * DIM * CLUSTERS)
    expected = netfv_reference(frames, assignments, centers, f64(layer.covar_weights))
    np.testing.assert_allclose(pooled, expected, rtol=1e-4, atol=1e-6)
    # F1 and F2 each have unit norm; only F1's clusters are normalised one by one.
    first, second = np.split(pooled, 2, axis=1)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(second, axis=1), 1.0, rtol=1e-5)
    columns = np.linalg.norm(first.reshape(BATCH, DIM, CLUSTERS), axis=1)
    np.testing.assert_allclose(columns * np.sqrt(CLUSTERS), 1.0, rtol=1e-5)


@pytest.mark.parametrize("max_pool", [False, True])
def test_soft_bag_of_words_is_the_normalised_sum_and_max_of_the_assignments(max_pool):
    rng = np.random.default_rng(3)
    frames = random_frames(rng)
    layer = built(model_util.SoftDbow(CLUSTERS, max_pool=max_pool), frames)
    cluster_bn = known_batch_norm(layer.cluster_bn, rng)
    assignments = reference_assignments(layer, cluster_bn, frames)
    np.testing.assert_allclose(
        layer.assignments(frames, training=False).numpy(), assignments, rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(assignments.sum(axis=2), 1.0)
    expected = l2n(assignments.sum(axis=1))
    if max_pool:
        expected = np.concatenate([expected, l2n(assignments.max(axis=1))], axis=1)
    np.testing.assert_allclose(layer(frames).numpy(), expected, rtol=1e-5, atol=1e-7)
    # Batch statistics in training: still one distribution over the clusters per frame.
    np.testing.assert_allclose(
        layer.assignments(frames, training=True).numpy().sum(axis=2), 1.0, rtol=1e-6
    )


def test_gated_bag_of_words_gates_the_sum_from_the_normalised_maximum():
    rng = np.random.default_rng(4)
    frames = random_frames(rng)
    layer = built(model_util.GatedDbow(CLUSTERS), frames)
    assert layer.dim_red.shape == (CLUSTERS, DIM) and layer.gate_weights.shape == (DIM, CLUSTERS)
    cluster_bn = known_batch_norm(layer.cluster_bn, rng)
    gate_bn = known_batch_norm(layer.gate_bn, rng)
    assignments = reference_assignments(layer, cluster_bn, frames)
    maximum = l2n(assignments.max(axis=1))
    gates = sigmoid(gate_bn(maximum @ f64(layer.dim_red) @ f64(layer.gate_weights)))
    expected = l2n(gates * assignments.sum(axis=1))
    np.testing.assert_allclose(layer(frames).numpy(), expected, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------
# NeXtVLAD.


def nextvlad_reference(layer, cluster_bn, vlad_bn, frames, num_frames):
    """The explicit Σ_{t,g} mask·α_tg·a_tgk·(x̃_tgj − c_jk), intra-L2n, flattened, BN."""
    expansion_weights, expansion_biases = f64(layer.expansion_weights), f64(layer.expansion_biases)
    attention_weights, attention_biases = f64(layer.attention_weights), f64(layer.attention_biases)
    cluster_weights, centers = f64(layer.cluster_weights), f64(layer.centers)
    groups, clusters, group_size = layer.groups, layer.cluster_size, layer.group_size
    frames = np.asarray(frames, np.float64)
    out = []
    for b in range(frames.shape[0]):
        vlad = np.zeros((group_size, clusters))
        for t in range(frames.shape[1]):
            mask = 1.0 if t < num_frames[b] else 0.0
            expanded = frames[b, t] @ expansion_weights + expansion_biases
            attention = sigmoid(expanded @ attention_weights + attention_biases)
            logits = cluster_bn(expanded @ cluster_weights)
            for g in range(groups):
                assignment = softmax(logits[g * clusters : (g + 1) * clusters])
                group = expanded[g * group_size : (g + 1) * group_size]
                for k in range(clusters):
                    weight = mask * attention[g] * assignment[k]
                    vlad[:, k] += weight * (group - centers[:, k])
        for k in range(clusters):
            vlad[:, k] = l2n(vlad[:, k])
        out.append(vlad_bn(flattened_dk(vlad)))
    return np.stack(out)


def nextvlad_layer(rng, frames, num_frames):
    layer = built(model_util.NeXtVLAD(CLUSTERS, groups=3, expansion=2), frames, num_frames)
    # Non-zero biases, so that the reference checks where they enter.
    layer.expansion_biases.assign(rng.normal(size=2 * DIM).astype(np.float32))
    layer.attention_biases.assign(rng.normal(size=3).astype(np.float32))
    return layer, known_batch_norm(layer.cluster_bn, rng), known_batch_norm(layer.vlad_bn, rng)


@pytest.mark.fast
def test_nextvlad_is_the_attended_grouped_vlad_of_the_expanded_frames():
    rng = np.random.default_rng(5)
    frames, num_frames = random_frames(rng), np.array([FRAMES, 4], np.int32)
    layer, cluster_bn, vlad_bn = nextvlad_layer(rng, frames, num_frames)
    assert layer.group_size == 4 and layer.centers.shape == (4, CLUSTERS)
    pooled = layer(frames, num_frames, training=False).numpy()
    assert pooled.shape == (BATCH, 4 * CLUSTERS)
    expected = nextvlad_reference(layer, cluster_bn, vlad_bn, frames, num_frames)
    np.testing.assert_allclose(pooled, expected, rtol=1e-4, atol=1e-5)


def test_nextvlad_ignores_the_padding_frames_in_inference():
    rng = np.random.default_rng(6)
    frames, num_frames = random_frames(rng), np.array([FRAMES, 3], np.int32)
    frames[1, 3:] = 0.0
    layer, _, _ = nextvlad_layer(rng, frames, num_frames)
    garbage = frames.copy()
    garbage[1, 3:] = 100 * rng.normal(size=(FRAMES - 3, DIM))
    np.testing.assert_allclose(
        layer(garbage, num_frames, training=False).numpy(),
        layer(frames, num_frames, training=False).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_nextvlad_indivisible_expansion_is_an_error():
    with pytest.raises(ValueError, match="12 expanded features do not split into 5"):
        model_util.NeXtVLAD(CLUSTERS, groups=5, expansion=2)(
            np.zeros((1, 2, DIM), np.float32), np.array([2])
        )


def model_frames(rng, num_frames, max_frames=9):
    """[videos, max_frames, 1032] frames, zero after each video's num_frames."""
    frames = random_frames(rng, (len(num_frames), max_frames, MODEL_FEATURES))
    for video, count in enumerate(num_frames):
        frames[video, count:] = 0.0
    return frames


def with_garbage_padding(rng, frames, num_frames, scale=10.0):
    garbage = frames.copy()
    for video, count in enumerate(num_frames):
        garbage[video, count:] = scale * rng.normal(size=garbage[video, count:].shape)
    return garbage


def test_nextvlad_model_ignores_the_padding_and_the_mixture_gate_does_not():
    rng = np.random.default_rng(7)
    num_frames = np.array([9, 4], np.int32)
    frames = model_frames(rng, num_frames)
    garbage = with_garbage_padding(rng, frames, num_frames)
    single = small_model("NeXtVLADModel")
    np.testing.assert_allclose(
        single(garbage, num_frames=num_frames)["predictions"].numpy(),
        single(frames, num_frames=num_frames)["predictions"].numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    # Faithful: MixNeXtVladModel's gate averages all max_frames rows, padding included.
    mixture = small_model("MixNeXtVladModel")
    clean = mixture(frames, num_frames=num_frames)["predictions"].numpy()
    noisy = mixture(garbage, num_frames=num_frames)["predictions"].numpy()
    np.testing.assert_allclose(noisy[0], clean[0], rtol=1e-5, atol=1e-6)
    assert np.abs(noisy[1] - clean[1]).max() > 1e-4


# ---------------------------------------------------------------------------------------
# Order invariance.


def permuted_real_frames(rng, frames, num_frames):
    permuted = frames.copy()
    for video, count in enumerate(num_frames):
        permuted[video, :count] = frames[video, rng.permutation(count)]
    return permuted


@pytest.mark.parametrize(
    "layer",
    [
        lambda: model_util.NetVLAD(CLUSTERS),
        lambda: model_util.NetVLAD(CLUSTERS, residual=False),
        lambda: model_util.NetFV(CLUSTERS, couple_weights=False, coupling_factor=0.0),
        lambda: model_util.SoftDbow(CLUSTERS, max_pool=True),
        lambda: model_util.GatedDbow(CLUSTERS),
    ],
    ids=["netvlad", "netrvlad", "netfv", "softdbow", "gateddbow"],
)
def test_pooling_does_not_depend_on_the_order_of_the_frames(layer):
    rng = np.random.default_rng(8)
    frames = random_frames(rng)
    layer = built(layer(), frames)
    known_batch_norm(layer.cluster_bn, rng)
    permuted = permuted_real_frames(rng, frames, [FRAMES] * BATCH)
    assert not np.array_equal(permuted, frames)
    np.testing.assert_allclose(layer(permuted).numpy(), layer(frames).numpy(), rtol=1e-5, atol=1e-6)


def test_nextvlad_does_not_depend_on_the_order_of_the_real_frames():
    rng = np.random.default_rng(9)
    frames, num_frames = random_frames(rng), np.array([FRAMES, 4], np.int32)
    layer, _, _ = nextvlad_layer(rng, frames, num_frames)
    permuted = permuted_real_frames(rng, frames, num_frames)
    np.testing.assert_allclose(
        layer(permuted, num_frames).numpy(), layer(frames, num_frames).numpy(), rtol=1e-5, atol=1e-5
    )


def test_gru_depends_on_the_order_of_the_frames():
    rng = np.random.default_rng(10)
    num_frames = np.array([9, 5], np.int32)
    frames = model_frames(rng, num_frames)
    model = small_model("GruModel")
    permuted = permuted_real_frames(rng, frames, num_frames)
    changes = np.abs(
        model(permuted, num_frames=num_frames)["predictions"].numpy()
        - model(frames, num_frames=num_frames)["predictions"].numpy()
    ).max(axis=1)
    assert np.all(changes > 1e-5), changes


# ---------------------------------------------------------------------------------------
# Context gating.


@pytest.mark.fast
def test_context_gating_is_the_input_times_the_sigmoid_of_its_batch_normed_product():
    rng = np.random.default_rng(11)
    values = rng.normal(size=(4, DIM)).astype(np.float32)
    layer = built(model_util.ContextGating(), values)
    assert layer.gating_weights.shape == (DIM, DIM)
    gating_bn = known_batch_norm(layer.gating_bn, rng)
    x = np.asarray(values, np.float64)
    expected = x * sigmoid(gating_bn(x @ f64(layer.gating_weights)))
    np.testing.assert_allclose(layer(values).numpy(), expected, rtol=1e-5, atol=1e-7)
    for training in (False, True):
        gated = layer(values, training=training).numpy()
        assert np.all(np.abs(gated) <= np.abs(values)) and np.all(gated * values >= 0)


def test_context_gating_with_zero_weights_and_fresh_batch_norm_halves_the_input():
    values = np.random.default_rng(12).normal(size=(4, DIM)).astype(np.float32)
    layer = built(model_util.ContextGating(), values)
    layer.gating_weights.assign(np.zeros((DIM, DIM), np.float32))
    for training in (False, True):
        np.testing.assert_allclose(layer(values, training=training).numpy(), values / 2, rtol=1e-6)


def test_context_gating_from_another_input_gates_the_values():
    rng = np.random.default_rng(13)
    gate_input = rng.normal(size=(4, DIM)).astype(np.float32)
    values = rng.normal(size=(4, VOCAB)).astype(np.float32)
    layer = built(model_util.ContextGating(gated_size=VOCAB), gate_input, values)
    assert layer.gating_weights.shape == (DIM, VOCAB)
    gating_bn = known_batch_norm(layer.gating_bn, rng)
    gates = sigmoid(gating_bn(np.asarray(gate_input, np.float64) @ f64(layer.gating_weights)))
    np.testing.assert_allclose(
        layer(gate_input, values).numpy(), values * gates, rtol=1e-5, atol=1e-7
    )


def test_se_context_gating_is_a_bottleneck_gate():
    rng = np.random.default_rng(14)
    values = rng.normal(size=(4, DIM)).astype(np.float32)
    layer = built(model_util.SEContextGating(reduction=2), values)
    assert layer.squeeze_weights.shape == (DIM, 3) and layer.excite_weights.shape == (3, DIM)
    gating_bn = known_batch_norm(layer.gating_bn, rng)
    x = np.asarray(values, np.float64)
    squeezed = np.maximum(gating_bn(x @ f64(layer.squeeze_weights)), 0.0)
    expected = x * sigmoid(squeezed @ f64(layer.excite_weights))
    np.testing.assert_allclose(layer(values).numpy(), expected, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------
# Gated mixture of experts.


def moe_reference(model, inputs):
    """Σ_{i<M} softmax(gates of class c)_i · σ(expert_i of class c), class c's columns."""
    x = np.asarray(inputs, np.float64)
    mixtures = model.num_mixtures
    gates = x @ f64(model.gates.kernel)
    experts = x @ f64(model.experts.kernel) + f64(model.experts.bias)
    probabilities = np.zeros((x.shape[0], VOCAB))
    for c in range(VOCAB):
        gate = softmax(gates[:, c * (mixtures + 1) : (c + 1) * (mixtures + 1)])
        expert = sigmoid(experts[:, c * mixtures : (c + 1) * mixtures])
        probabilities[:, c] = np.sum(gate[:, :mixtures] * expert, axis=1)
    return probabilities


@pytest.mark.fast
@pytest.mark.parametrize("gating_input", ["prob", "input"])
def test_gated_moe_is_the_moe_probabilities_times_their_context_gates(gating_input):
    rng = np.random.default_rng(15)
    inputs = rng.normal(size=(3, DIM)).astype(np.float32)
    model = video_level_models.MoeModel(
        VOCAB, moe_num_mixtures=2, moe_prob_gating=True, moe_prob_gating_input=gating_input
    )
    model(inputs)
    gating = model.prob_gating
    gating_bn = known_batch_norm(gating.gating_bn, rng)
    plain = moe_reference(model, inputs)
    gate_input = plain if gating_input == "prob" else np.asarray(inputs, np.float64)
    assert gating.gating_weights.shape == (gate_input.shape[1], VOCAB)
    assert not gating.losses  # The probability gates carry no L2.
    expected = plain * sigmoid(gating_bn(gate_input @ f64(gating.gating_weights)))
    np.testing.assert_allclose(
        model(inputs, training=False)["predictions"].numpy(), expected, rtol=1e-5, atol=1e-7
    )


# ---------------------------------------------------------------------------------------
# Distillation.


def distillation_reference(mixture_logits, branch_logits, temperature):
    teacher = softmax(np.asarray(mixture_logits, np.float64) / temperature)
    students = softmax(np.asarray(branch_logits, np.float64) / temperature)
    total = 0.0
    for b in range(teacher.shape[0]):
        for m in range(students.shape[1]):
            total += np.sum(teacher[b] * (np.log(teacher[b]) - np.log(students[b, m])))
    return total / teacher.shape[0]


@pytest.mark.fast
def test_distillation_loss_is_the_mean_summed_kl_from_the_mixture_to_each_branch():
    rng = np.random.default_rng(16)
    mixture = rng.normal(size=(3, VOCAB)).astype(np.float32)
    branches = rng.normal(size=(3, 4, VOCAB)).astype(np.float32)
    loss = frame_level_models.distillation_loss(mixture, branches, 2.5).numpy()
    np.testing.assert_allclose(loss, distillation_reference(mixture, branches, 2.5), rtol=1e-5)
    for seed in range(5):
        draw = np.random.default_rng(seed)
        mixture = 3 * draw.normal(size=(2, VOCAB)).astype(np.float32)
        branches = 3 * draw.normal(size=(2, 3, VOCAB)).astype(np.float32)
        assert frame_level_models.distillation_loss(mixture, branches, 1.0).numpy() > 0
    same = np.repeat(mixture[:, None], 3, axis=1)
    assert abs(frame_level_models.distillation_loss(mixture, same, 3.0).numpy()) < 1e-6


def test_distillation_gradients_reach_the_mixture_and_the_branches():
    rng = np.random.default_rng(17)
    mixture = tf.Variable(rng.normal(size=(2, VOCAB)).astype(np.float32))
    branches = tf.Variable(rng.normal(size=(2, 3, VOCAB)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = frame_level_models.distillation_loss(mixture, branches, 2.0)
    mixture_gradient, branch_gradient = tape.gradient(loss, [mixture, branches])
    assert mixture_gradient is not None and branch_gradient is not None
    assert np.abs(mixture_gradient.numpy()).max() > 1e-4
    assert np.abs(branch_gradient.numpy()).min() > 0


def test_a_mixture_of_one_branch_is_that_branch_and_distills_nothing():
    rng = np.random.default_rng(18)
    num_frames = np.array([9, 4], np.int32)
    frames = model_frames(rng, num_frames)
    model = small_model("MixNeXtVladModel", mix_number=1)
    outputs = model(frames, num_frames=num_frames, training=True)
    np.testing.assert_allclose(
        outputs["logits"].numpy(),
        model.branch_0(frames, num_frames=num_frames, training=True)["logits"].numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    assert abs(float(outputs["regularization_loss"])) < 1e-6


def test_mixture_in_training_returns_the_branches_and_their_distillation_loss():
    rng = np.random.default_rng(19)
    num_frames = np.array([9, 4, 6], np.int32)
    frames = model_frames(rng, num_frames)
    model = small_model("MixNeXtVladModel", cl_temperature=1.5, cl_lambda=3.0)
    outputs = model(frames, num_frames=num_frames, training=True)
    # drop_rate 0: the branches in training are deterministic (batch statistics).
    branch_logits = np.stack(
        [
            branch(frames, num_frames=num_frames, training=True)["logits"].numpy()
            for branch in (model.branch_0, model.branch_1)
        ],
        axis=1,
    )
    frame_mean = model.mix_bn(tf.reduce_mean(frames, 1), training=True)
    mixture = softmax(np.asarray(model.mix_gate(frame_mean).numpy(), np.float64))
    logits = np.sum(mixture[:, :, None] * branch_logits, axis=1)
    np.testing.assert_allclose(outputs["logits"].numpy(), logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["predictions"].numpy(), sigmoid(logits), rtol=1e-5)
    assert outputs["aux_predictions"].shape == (2, 3, VOCAB)
    np.testing.assert_allclose(
        outputs["aux_predictions"].numpy(),
        sigmoid(np.transpose(branch_logits, [1, 0, 2])),
        rtol=1e-5,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        float(outputs["regularization_loss"]),
        3.0 * distillation_reference(outputs["logits"].numpy(), branch_logits, 1.5),
        rtol=1e-4,
    )
    inference = model(frames, num_frames=num_frames, training=False)
    assert sorted(inference) == ["logits", "predictions"]


def test_nextvlad_branch_logits_in_training_are_the_model_training_logits():
    rng = np.random.default_rng(24)
    num_frames = np.array([9, 4, 6], np.int32)
    frames = model_frames(rng, num_frames)
    model = small_model("NeXtVLADModel", drop_rate=0.0)
    called = model(frames, num_frames=num_frames, training=True)["logits"].numpy()
    np.testing.assert_allclose(
        model.logits(frames, num_frames, is_training=True).numpy(), called, rtol=1e-5, atol=1e-6
    )


@pytest.mark.fast
def test_label_loss_sums_the_cross_entropy_of_the_predictions_and_each_aux_head():
    rng = np.random.default_rng(20)
    predictions = rng.uniform(size=(3, VOCAB)).astype(np.float32)
    aux = rng.uniform(size=(2, 3, VOCAB)).astype(np.float32)
    labels = (rng.uniform(size=(3, VOCAB)) < 0.4).astype(np.float32)
    weights = rng.uniform(size=(3, VOCAB)).astype(np.float32)

    def cross_entropy(p, w):
        p = np.asarray(p, np.float64)
        terms = labels * np.log(p + 1e-5) + (1 - labels) * np.log(1 - p + 1e-5)
        return np.mean(np.sum(-terms * w, axis=1))

    outputs = {"predictions": tf.constant(predictions), "aux_predictions": tf.constant(aux)}
    loss = losses.CrossEntropyLoss()
    for label_weights, w in ((None, 1.0), (weights, weights)):
        expected = sum(cross_entropy(head, w) for head in (predictions, *aux))
        np.testing.assert_allclose(
            models.label_loss(outputs, labels, loss, label_weights).numpy(), expected, rtol=1e-5
        )
    np.testing.assert_allclose(
        models.label_loss({"predictions": tf.constant(predictions)}, labels, loss).numpy(),
        cross_entropy(predictions, 1.0),
        rtol=1e-5,
    )


# ---------------------------------------------------------------------------------------
# Robustness and sampling.


def assert_finite_outputs(outputs):
    for name, value in outputs.items():
        assert np.all(np.isfinite(np.asarray(tf.cast(value, tf.float32)))), name


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_models_give_finite_outputs_on_zero_frames_and_short_and_full_videos(name):
    rng = np.random.default_rng(21)
    model = small_model(name)
    max_frames = 9
    cases = [  # All-zero videos, then real ones, each of max_frames and of 1 frame.
        (np.zeros((2, max_frames, MODEL_FEATURES), np.float32), [max_frames, 1]),
        (model_frames(rng, [1, max_frames], max_frames), [1, max_frames]),
    ]
    for frames, num_frames in cases:
        for training in (True, False):
            outputs = model(frames, num_frames=np.array(num_frames, np.int32), training=training)
            assert outputs["predictions"].shape == (2, VOCAB)
            assert_finite_outputs(outputs)


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


POOLING_LAYERS = {
    "netvlad": lambda: model_util.NetVLAD(CLUSTERS),
    "netrvlad": lambda: model_util.NetVLAD(CLUSTERS, residual=False),
    "netfv": lambda: model_util.NetFV(CLUSTERS, couple_weights=True, coupling_factor=0.01),
    "netfv_own_centers": lambda: model_util.NetFV(CLUSTERS, False, 0.0),
    "softdbow": lambda: model_util.SoftDbow(CLUSTERS, max_pool=True),
    "gateddbow": lambda: model_util.GatedDbow(CLUSTERS),
}


def test_pooled_outputs_and_predictions_are_finite_in_mixed_bfloat16(mixed_bfloat16):
    rng = np.random.default_rng(22)
    frames = random_frames(rng)
    num_frames = np.array([FRAMES, 1], np.int32)
    for name, layer in POOLING_LAYERS.items():
        layer = layer()
        assert layer.compute_dtype == "bfloat16"
        for inputs in (frames, np.zeros_like(frames)):
            for training in (True, False):
                pooled = layer(inputs, training=training)
                assert pooled.dtype == tf.float32, name
                assert np.all(np.isfinite(pooled.numpy())), name
    nextvlad = model_util.NeXtVLAD(CLUSTERS, groups=3, expansion=2)
    for inputs in (frames, np.zeros_like(frames)):
        for training in (True, False):
            pooled = nextvlad(inputs, num_frames, training=training)
            assert np.all(np.isfinite(tf.cast(pooled, tf.float32).numpy()))
    model_num_frames = np.array([9, 1], np.int32)
    model_input = model_frames(rng, model_num_frames)
    for name in sorted(set(SMALL_MODELS) - {"NetRVLAD", "NetFVModelLF-coupled"}):
        model = small_model(name)
        for training in (True, False):
            outputs = model(model_input, num_frames=model_num_frames, training=training)
            assert_finite_outputs(outputs)


@pytest.mark.parametrize(
    "name,sample_random_frames",
    [(name, True) for name in LATE_FUSION] + [("NetVLADModelLF", False)],
    ids=[*LATE_FUSION, "NetVLADModelLF-sequence"],
)
def test_late_fusion_models_sample_only_real_frames(name, sample_random_frames):
    rng = np.random.default_rng(23)
    num_frames = np.array([5, 1, 9, 2], np.int32)
    frames = model_frames(rng, num_frames)
    for video, count in enumerate(num_frames):
        frames[video, count:] = np.nan  # Any padding frame sampled would make NaN outputs.
    model = small_model(name, sample_random_frames=sample_random_frames, iterations=12)
    tf.random.set_seed(0)
    for training in (False, False, True, False):
        outputs = model(frames, num_frames=num_frames, training=training)
        assert_finite_outputs(outputs)
