"""Frame sampling, pooling and gating shared by the models: TF ops and Keras layers."""

import math

import keras
import tensorflow as tf


def SampleRandomSequence(model_input, num_frames, num_samples):
    """Samples a random contiguous sequence of frames from each video.

    Frames repeat (the last real one) when a video is shorter than num_samples.

    Args:
      model_input: float [batch_size, max_frames, feature_size].
      num_frames: int [batch_size, 1]: each video's number of real frames.
      num_samples: how many frames to take.

    Returns:
      float [batch_size, num_samples, feature_size].
    """
    batch_size = tf.shape(model_input)[0]
    num_frames = tf.cast(num_frames, tf.int32)
    frame_index_offset = tf.tile(tf.expand_dims(tf.range(num_samples), 0), [batch_size, 1])
    max_start_frame_index = tf.maximum(num_frames - num_samples, 0)
    start_frame_index = tf.cast(
        tf.random.uniform([batch_size, 1]) * tf.cast(max_start_frame_index + 1, tf.float32),
        tf.int32,
    )
    # The original took min(start + j, num_frames - 1), which is -1 for a video without
    # frames and crashes the gather; such a video reads its (zero) first row instead.
    last_frame_index = tf.maximum(num_frames - 1, 0)
    frame_index = tf.minimum(start_frame_index + frame_index_offset, last_frame_index)
    return gather_frames(model_input, frame_index)


def SampleRandomFrames(model_input, num_frames, num_samples):
    """Samples num_samples frames uniformly, with replacement, from each video's real frames.

    Args:
      model_input: float [batch_size, max_frames, feature_size].
      num_frames: int [batch_size, 1]: each video's number of real frames.
      num_samples: how many frames to take.

    Returns:
      float [batch_size, num_samples, feature_size].
    """
    batch_size = tf.shape(model_input)[0]
    frame_index = tf.cast(
        tf.random.uniform([batch_size, num_samples])
        * tf.tile(tf.cast(num_frames, tf.float32), [1, num_samples]),
        tf.int32,
    )
    return gather_frames(model_input, frame_index)


def sampled_frames(model_input, num_frames, num_samples: int, random_frames: bool):
    """Returns num_samples frames of each video: drawn at random, or a random sequence.

    Args:
      model_input: float [batch_size, max_frames, feature_size].
      num_frames: int [batch_size]: each video's number of real frames.
      num_samples: how many frames to take.
      random_frames: SampleRandomFrames if true, else SampleRandomSequence.
    """
    num_frames = tf.reshape(tf.cast(num_frames, tf.float32), [-1, 1])
    sampler = SampleRandomFrames if random_frames else SampleRandomSequence
    return sampler(model_input, num_frames, num_samples)


def gather_frames(model_input, frame_index):
    """Returns model_input[b, frame_index[b, j]] as [batch_size, num_samples, features]."""
    return tf.gather(model_input, frame_index, batch_dims=1)


def FramePooling(frames, method):
    """Pools over the frames of each video.

    Args:
      frames: float [batch_size, num_frames, feature_size].
      method: "average", "max", or "none" (keep every frame as its own row; the original's
        "none" called a missing method and crashed).

    Returns:
      float [batch_size, feature_size], or [batch_size * num_frames, feature_size] for
      "none".

    Raises:
      ValueError: an unknown method.
    """
    if method == "average":
        return tf.reduce_mean(frames, 1)
    if method == "max":
        return tf.reduce_max(frames, 1)
    if method == "none":
        return tf.reshape(frames, [-1, frames.shape[2]])
    raise ValueError(f"Unrecognized pooling method: {method}")


# ---------------------------------------------------------------------------------------
# Layers of the YouTube-8M challenge winners' models (WILLOW 2017, NeXtVLAD 2018).

# The settings of slim.batch_norm, which the original and the winners used. Synchronized:
# with several replicas, batch statistics (and so the moving averages) cover the global
# batch, so every replica holds the same moving statistics.
BATCH_NORM = dict(momentum=0.999, epsilon=1e-3, center=True, scale=True, synchronized=True)


def batch_norm(name: str) -> keras.layers.BatchNormalization:
    """Returns a batch normalization layer with slim's settings (momentum 0.999, ε 1e-3)."""
    return keras.layers.BatchNormalization(name=name, **BATCH_NORM)


def normal(stddev: float, mean: float = 0.0) -> keras.initializers.Initializer:
    """Returns the winners' tf.random_normal_initializer(mean, stddev)."""
    return keras.initializers.RandomNormal(mean=mean, stddev=stddev)


def l2_normalized(values, axis: int):
    """Returns values / √max(Σ values², 1e-12) along axis: zero vectors stay zero."""
    return tf.math.l2_normalize(values, axis=axis, epsilon=1e-12)


def flattened(values):
    """Returns [batch, a, b] as [batch, a * b], row-major (element (a, b) at a * B + b)."""
    return tf.reshape(values, [-1, values.shape[1] * values.shape[2]])


class ContextGating(keras.layers.Layer):
    """Context Gating (Miech et al. 2017): y = x ⊙ σ(BN(g W)), with g = x by default.

    The n × n gate re-weights each feature from the context of all the others; on a
    classifier's output it models correlations between classes. The published code's
    batch norm takes the place of the gate's bias. With `gated_size`, the gate is
    computed from another tensor g of any width (call(gate_input, values)).
    """

    def __init__(self, gated_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.gated_size = gated_size
        self.gating_bn = batch_norm("gating_bn")

    def build(self, input_shape):
        """Creates W [gate input, gated] ~ N(0, 1/√gated), as published."""
        gated_size = self.gated_size or input_shape[-1]
        self.gating_weights = self.add_weight(
            name="gating_weights",
            shape=(input_shape[-1], gated_size),
            initializer=normal(1 / math.sqrt(gated_size)),
        )

    def call(self, gate_input, values=None, training=False):
        """Returns values (default: gate_input) times their gates, each in (0, 1)."""
        gates = self.gating_bn(tf.matmul(gate_input, self.gating_weights), training=training)
        return (gate_input if values is None else values) * tf.sigmoid(gates)


class SEContextGating(keras.layers.Layer):
    """NeXtVLAD's squeeze-and-excitation gate: y = x ⊙ σ(ReLU(BN(x W₁)) W₂).

    A bottleneck of n / reduction units: 2n²/reduction weights instead of n².
    """

    def __init__(self, reduction: int, **kwargs):
        super().__init__(**kwargs)
        self.reduction = reduction
        self.gating_bn = batch_norm("gating_bn")

    def build(self, input_shape):
        """Creates W₁ [n, n/r] and W₂ [n/r, n], He-normal, no biases."""
        size = input_shape[-1]
        self.squeeze_weights = self.add_weight(
            name="squeeze_weights", shape=(size, size // self.reduction), initializer="he_normal"
        )
        self.excite_weights = self.add_weight(
            name="excite_weights", shape=(size // self.reduction, size), initializer="he_normal"
        )

    def call(self, values, training=False):
        """Returns values times their gates, each in (0, 1)."""
        squeezed = tf.nn.relu(self.gating_bn(values @ self.squeeze_weights, training=training))
        return values * tf.sigmoid(squeezed @ self.excite_weights)


class ClusterPooling(keras.layers.Layer):
    """Base of the WILLOW pooling layers: frames [batch, frames, D] → one vector per video.

    Each frame is soft-assigned to cluster_size clusters, a = softmax(BN(x W_a)), with
    W_a ~ N(0, 1/√D); subclasses pool the assignments. Under mixed precision the matrix
    products run in 16 bits and the softmax, sums over frames and norms in float32.
    """

    def __init__(self, cluster_size: int, **kwargs):
        super().__init__(**kwargs)
        self.cluster_size = cluster_size
        self.cluster_bn = batch_norm("cluster_bn")

    def build(self, input_shape):
        """Creates W_a [D, cluster_size]."""
        self.feature_size = input_shape[-1]
        self.cluster_weights = self.add_weight(
            name="cluster_weights",
            shape=(self.feature_size, self.cluster_size),
            initializer=normal(1 / math.sqrt(self.feature_size)),
        )

    def assignments(self, frames, training):
        """Returns float32 [batch, frames, cluster_size]: each frame's soft assignment."""
        logits = self.cluster_bn(frames @ self.cluster_weights, training=training)
        return tf.nn.softmax(tf.cast(logits, tf.float32))

    def float32_weight(self, name: str, shape, initializer):
        """Creates a weight read in float32 in every precision (not cast to 16 bits)."""
        return self.add_weight(name=name, shape=shape, initializer=initializer, autocast=False)


class NetVLAD(ClusterPooling):
    """NetVLAD (Arandjelović et al.): the assignment-weighted residuals to K centers.

    U_dk = Σ_t a_tk (x_td − C_dk), each cluster's column L2-normalised, flattened
    (element (d, k) at d·K + k) and L2-normalised again: D·K values. With residual=False
    it is NetRVLAD (WILLOW's "lightvlad"): no centers, U_dk = Σ_t a_tk x_td.
    """

    def __init__(self, cluster_size: int, residual: bool = True, **kwargs):
        super().__init__(cluster_size, **kwargs)
        self.residual = residual

    def build(self, input_shape):
        """Creates W_a and, for NetVLAD, the centers C [D, K] ~ N(0, 1/√D)."""
        super().build(input_shape)
        if self.residual:
            self.centers = self.float32_weight(
                "centers",
                (self.feature_size, self.cluster_size),
                normal(1 / math.sqrt(self.feature_size)),
            )

    def call(self, frames, training=False):
        """Returns float32 [batch, D·K]."""
        assignments = self.assignments(frames, training)
        vlad = tf.einsum("btk,btd->bdk", assignments, tf.cast(frames, tf.float32))
        if self.residual:
            vlad -= tf.reduce_sum(assignments, 1, keepdims=True) * self.centers
        return l2_normalized(flattened(l2_normalized(vlad, axis=1)), axis=1)


class NetFV(ClusterPooling):
    """NetFV: a learned Fisher vector, first- and second-order statistics per cluster.

    With σ = w² + 1e-6 and A_k = Σ_t a_tk:
      F1_dk = (Σ_t a_tk x_td − A_k C_dk) / σ_dk, intra- then globally L2-normalised;
      F2_dk = Σ_t a_tk (x_td − C_dk)² / σ_dk² − A_k, globally L2-normalised only
    (as published). Output [F1, F2]: 2·D·K values. With couple_weights the centers are
    coupling_factor · W_a instead of weights of their own.
    """

    def __init__(self, cluster_size: int, couple_weights: bool, coupling_factor: float, **kwargs):
        super().__init__(cluster_size, **kwargs)
        self.couple_weights = couple_weights
        self.coupling_factor = coupling_factor

    def build(self, input_shape):
        """Creates W_a, the covariance weights w ~ N(1, 1/√D) and (uncoupled) C ~ N(0, 1/√D)."""
        super().build(input_shape)
        shape = (self.feature_size, self.cluster_size)
        stddev = 1 / math.sqrt(self.feature_size)
        self.covar_weights = self.float32_weight("covar_weights", shape, normal(stddev, 1.0))
        if not self.couple_weights:
            self.centers = self.float32_weight("centers", shape, normal(stddev))

    def call(self, frames, training=False):
        """Returns float32 [batch, 2·D·K]."""
        assignments = self.assignments(frames, training)
        frames = tf.cast(frames, tf.float32)
        if self.couple_weights:
            centers = self.coupling_factor * tf.cast(self.cluster_weights.value, tf.float32)
        else:
            centers = self.centers
        sigma = tf.square(self.covar_weights) + 1e-6
        mass = tf.reduce_sum(assignments, 1, keepdims=True)
        first = tf.einsum("btk,btd->bdk", assignments, frames)
        second = tf.einsum("btk,btd->bdk", assignments, tf.square(frames))
        second = (second + mass * tf.square(centers) - 2 * first * centers) / tf.square(sigma)
        second = l2_normalized(flattened(second - mass), axis=1)
        first = l2_normalized((first - mass * centers) / sigma, axis=1)
        return tf.concat([l2_normalized(flattened(first), axis=1), second], 1)


class SoftDbow(ClusterPooling):
    """Soft bag of words: the L2-normalised sum of the frames' soft assignments (K values).

    With max_pool, the L2-normalised maximum of the assignments follows (2K values).
    """

    def __init__(self, cluster_size: int, max_pool: bool = False, **kwargs):
        super().__init__(cluster_size, **kwargs)
        self.max_pool = max_pool

    def call(self, frames, training=False):
        """Returns float32 [batch, K] or [batch, 2K]."""
        assignments = self.assignments(frames, training)
        pooled = l2_normalized(tf.reduce_sum(assignments, 1), axis=1)
        if not self.max_pool:
            return pooled
        return tf.concat([pooled, l2_normalized(tf.reduce_max(assignments, 1), axis=1)], 1)


class GatedDbow(ClusterPooling):
    """WILLOW's gated bag of words: the assignments' sum, gated from their maximum.

    s = Σ_t a_t, μ = L2n(max_t a_t), g = σ(BN(μ W_r W₂)) with the low-rank K → D → K
    weights W_r [K, D], W₂ [D, K] ~ N(0, 1/√D) and no bias; output L2n(g ⊙ s), K values.
    """

    def __init__(self, cluster_size: int, **kwargs):
        super().__init__(cluster_size, **kwargs)
        self.gate_bn = batch_norm("gate_bn")

    def build(self, input_shape):
        """Creates W_a, W_r and W₂."""
        super().build(input_shape)
        initializer = normal(1 / math.sqrt(self.feature_size))
        self.dim_red = self.add_weight(
            name="dim_red", shape=(self.cluster_size, self.feature_size), initializer=initializer
        )
        self.gate_weights = self.add_weight(
            name="gate_weights",
            shape=(self.feature_size, self.cluster_size),
            initializer=initializer,
        )

    def call(self, frames, training=False):
        """Returns float32 [batch, K]."""
        assignments = self.assignments(frames, training)
        maximum = l2_normalized(tf.reduce_max(assignments, 1), axis=1)
        gates = self.gate_bn(
            tf.cast(maximum, self.compute_dtype) @ self.dim_red @ self.gate_weights,
            training=training,
        )
        gated = tf.sigmoid(tf.cast(gates, tf.float32)) * tf.reduce_sum(assignments, 1)
        return l2_normalized(gated, axis=1)


class NeXtVLAD(keras.layers.Layer):
    """NeXtVLAD (Lin et al. 2018): NetVLAD over groups of an expanded, attended frame.

    Each frame x [N] is expanded to ẋ = x W_e + b_e [λN] and cut into G groups of λN/G
    features; group g of frame t weighs in with attention α_tg = σ(ẋ_t W_g + b_g) (zero
    on padding frames) and is soft-assigned to K clusters (softmax(BN(ẋ_t W_c)) per
    group). Residuals to K centers of λN/G values are summed over frames and groups,
    each cluster L2-normalised, flattened (element (j, k) at j·K + k) and batch
    normalised: K·λN/G values. Weights He-normal, as published.
    """

    def __init__(self, cluster_size: int, groups: int, expansion: int, **kwargs):
        super().__init__(**kwargs)
        self.cluster_size = cluster_size
        self.groups = groups
        self.expansion = expansion
        self.cluster_bn = batch_norm("cluster_bn")
        self.vlad_bn = batch_norm("vlad_bn")

    def build(self, input_shape):
        """Creates the expansion, attention, assignment and center weights."""
        expanded = self.expansion * input_shape[-1]
        if expanded % self.groups:
            raise ValueError(f"{expanded} expanded features do not split into {self.groups}")
        self.group_size = expanded // self.groups
        clusters, groups = self.cluster_size, self.groups
        self.expansion_weights = self.add_weight(
            name="expansion_weights", shape=(input_shape[-1], expanded), initializer="he_normal"
        )
        self.expansion_biases = self.add_weight(
            name="expansion_biases", shape=(expanded,), initializer="zeros"
        )
        self.attention_weights = self.add_weight(
            name="attention_weights", shape=(expanded, groups), initializer="he_normal"
        )
        self.attention_biases = self.add_weight(
            name="attention_biases", shape=(groups,), initializer="zeros"
        )
        self.cluster_weights = self.add_weight(
            name="cluster_weights", shape=(expanded, groups * clusters), initializer="he_normal"
        )
        self.centers = self.add_weight(
            name="centers",
            shape=(self.group_size, clusters),
            initializer="he_normal",
            autocast=False,
        )

    def call(self, frames, num_frames, training=False):
        """Returns [batch, K·λN/G] for frames [batch, T, N] of which num_frames are real."""
        max_frames = frames.shape[1] or tf.shape(frames)[1]
        expanded = frames @ self.expansion_weights + self.expansion_biases
        mask = tf.sequence_mask(num_frames, max_frames, dtype=tf.float32)
        attention = tf.sigmoid(
            tf.cast(expanded @ self.attention_weights + self.attention_biases, tf.float32)
        )
        attention = tf.reshape(attention * mask[:, :, None], [-1, max_frames * self.groups, 1])
        # Row t·G + g holds group g of frame t, in the features and the assignments alike.
        logits = self.cluster_bn(expanded @ self.cluster_weights, training=training)
        logits = tf.reshape(
            tf.cast(logits, tf.float32), [-1, max_frames * self.groups, self.cluster_size]
        )
        weights = tf.nn.softmax(logits) * attention
        grouped = tf.reshape(
            tf.cast(expanded, tf.float32), [-1, max_frames * self.groups, self.group_size]
        )
        vlad = tf.einsum("bnk,bnj->bjk", weights, grouped)
        vlad -= tf.reduce_sum(weights, 1, keepdims=True) * self.centers
        return self.vlad_bn(flattened(l2_normalized(vlad, axis=1)), training=training)
