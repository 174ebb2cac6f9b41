"""Models that classify a video from its frame-level features [batch, max_frames, features].

Train them with --frame_features --feature_names=rgb,audio --feature_sizes=1024,128.
"""

import dataclasses
import math

import keras
import tensorflow as tf

import errors
import model_util
import models
import video_level_models
from settings import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, Range, Settings, setting

# Cluster and group counts of which the audio branch takes half.
HALVED_FOR_AUDIO = Range(2)


@dataclasses.dataclass(frozen=True)
class Hyperparameters(Settings):
    """The frame-level models' hyperparameter flags, recorded in model_flags.json."""

    iterations: int = setting(30, "Number of frames per batch for DBoF.", AT_LEAST_ONE)
    dbof_add_batch_norm: bool = setting(True, "Adds batch normalization to the DBoF model.")
    sample_random_frames: bool = setting(
        True,
        "If true samples random frames (for frame level models). If false, a random sequence "
        "of frames is sampled instead.",
    )
    dbof_cluster_size: int = setting(
        8192, "Number of units in the DBoF cluster layer.", AT_LEAST_ONE
    )
    dbof_hidden_size: int = setting(1024, "Number of units in the DBoF hidden layer.", AT_LEAST_ONE)
    dbof_pooling_method: str = setting(
        "max",
        "The pooling method used in the DBoF cluster layer. Choices are 'average' and 'max'.",
    )
    dbof_activation: str = setting(
        "sigmoid",
        "The nonlinear activation method for cluster and hidden dense layer, e.g., sigmoid, relu6.",
    )
    video_level_classifier_model: str = setting(
        "MoeModel",
        "Some Frame-Level models can be decomposed into a generalized pooling operation "
        "followed by a classifier layer",
    )
    lstm_cells: int = setting(1024, "Number of LSTM cells.", AT_LEAST_ONE)
    lstm_layers: int = setting(2, "Number of LSTM layers.", AT_LEAST_ONE)
    # The 2017 winners' (WILLOW) models.
    netvlad_cluster_size: int = setting(
        64, "Number of units in the NetVLAD cluster layer.", HALVED_FOR_AUDIO
    )
    netvlad_hidden_size: int = setting(
        1024, "Number of units in the NetVLAD hidden layer.", AT_LEAST_ONE
    )
    netvlad_relu: bool = setting(
        True, "Batch norm and ReLU6 after the NetVLAD hidden layer (else a linear layer)."
    )
    lightvlad: bool = setting(False, "NetRVLAD: NetVLAD without cluster centers.")
    gating: bool = setting(False, "Context Gating after the NetVLAD / NetFV hidden layer.")
    fv_cluster_size: int = setting(
        64, "Number of units in the NetFV cluster layer.", HALVED_FOR_AUDIO
    )
    fv_hidden_size: int = setting(2048, "Number of units in the NetFV hidden layer.", AT_LEAST_ONE)
    fv_relu: bool = setting(
        True, "Batch norm and ReLU6 after the NetFV hidden layer (else a linear layer)."
    )
    fv_couple_weights: bool = setting(
        True, "NetFV centers are fv_coupling_factor times the cluster weights."
    )
    fv_coupling_factor: float = setting(0.01, "Coupling factor of the NetFV centers.", NON_NEGATIVE)
    dbof_relu: bool = setting(
        True,
        "Batch norm and ReLU6 after the SoftDbofModelLF / GatedDbofModelLF hidden layer "
        "(else a linear layer).",
    )
    softdbof_maxpool: bool = setting(False, "Soft-DBoW also max-pools the assignments.")
    fc_dimred: bool = setting(
        True, "SoftDbofModelLF / GatedDbofModelLF: a hidden layer after the pooling."
    )
    gru_cells: int = setting(1024, "Number of GRU cells.", AT_LEAST_ONE)
    gru_layers: int = setting(2, "Number of GRU layers.", AT_LEAST_ONE)
    gru_backward: bool = setting(False, "The GRU reads each video's frames backwards.")
    gru_random_sequence: bool = setting(
        False, "The GRU reads `iterations` frames sampled at random instead of every frame."
    )
    # The 2018 winners' (NeXtVLAD) models.
    nextvlad_cluster_size: int = setting(
        64, "Number of NeXtVLAD clusters (audio: half).", HALVED_FOR_AUDIO
    )
    nextvlad_hidden_size: int = setting(
        1024, "Number of units in the NeXtVLAD hidden layer.", AT_LEAST_ONE
    )
    groups: int = setting(8, "Number of NeXtVLAD groups (audio: half).", HALVED_FOR_AUDIO)
    expansion: int = setting(
        2, "NeXtVLAD expansion factor λ of each frame's features.", AT_LEAST_ONE
    )
    gating_reduction: int = setting(
        8, "Reduction factor of NeXtVLAD's SE context gate.", AT_LEAST_ONE
    )
    drop_rate: float = setting(0.5, "Dropout rate of the pooled NeXtVLAD features.", FRACTION)
    mix_number: int = setting(3, "Number of NeXtVLAD branches of MixNeXtVladModel.", AT_LEAST_ONE)
    cl_temperature: float = setting(
        2.0, "Temperature of MixNeXtVladModel's distillation softmaxes.", POSITIVE
    )
    cl_lambda: float = setting(1.0, "Weight of MixNeXtVladModel's distillation loss.", NON_NEGATIVE)


def video_level_classifier(name: str, vocab_size: int, hyperparameters: dict) -> models.BaseModel:
    """Returns the video-level model (e.g. MoeModel) that classifies the pooled frames."""
    cls = errors.chosen(name, video_level_models.MODELS, "video_level_classifier_model")
    return cls(vocab_size, **hyperparameters)


class FrameLevelLogisticModel(models.BaseModel):
    """Logistic regression over the average of a video's real frames."""

    def __init__(self, vocab_size: int, **unused_hyperparameters):
        """Creates the logistic layer (Glorot weights, zero biases, L2 1e-8)."""
        super().__init__(vocab_size)
        self.logistic = keras.layers.Dense(
            vocab_size, activation="sigmoid", kernel_regularizer=models.slim_l2(1e-8)
        )

    def create_model(self, model_input, vocab_size, num_frames, **unused_params):
        """Returns {"predictions": sigmoid(W · Σ_t frames_t / num_frames + b)}.

        The sum runs over all max_frames rows; padding rows are zero, so it is the average
        of the real frames.
        """
        num_frames = tf.cast(tf.expand_dims(num_frames, 1), model_input.dtype)
        avg_pooled = tf.reduce_sum(model_input, axis=[1]) / num_frames
        return {"predictions": self.logistic(avg_pooled)}


class DbofModel(models.BaseModel):
    """Deep Bag of Frames: sampled frames → cluster layer → pooling → hidden → classifier.

    Frames are sampled in training and at evaluation alike (as the original did; eval.py
    seeds the sampling). Batch normalization uses slim's momentum 0.999 and ε 1e-3, its
    moving statistics updated in training and used in inference mode.
    """

    def __init__(
        self,
        vocab_size: int,
        iterations: int = Hyperparameters.iterations,
        dbof_add_batch_norm: bool = Hyperparameters.dbof_add_batch_norm,
        sample_random_frames: bool = Hyperparameters.sample_random_frames,
        dbof_cluster_size: int = Hyperparameters.dbof_cluster_size,
        dbof_hidden_size: int = Hyperparameters.dbof_hidden_size,
        dbof_pooling_method: str = Hyperparameters.dbof_pooling_method,
        dbof_activation: str = Hyperparameters.dbof_activation,
        video_level_classifier_model: str = Hyperparameters.video_level_classifier_model,
        **hyperparameters,
    ):
        """Creates the layers; the feature size is taken from the first input."""
        super().__init__(vocab_size)
        if dbof_activation not in ("sigmoid", "relu6"):
            raise errors.UserError(
                f"{{dbof_activation}}={dbof_activation!r}: use 'sigmoid' or 'relu6'.",
                "dbof_activation",
            )
        if dbof_pooling_method not in ("max", "average"):
            raise errors.UserError(
                f"{{dbof_pooling_method}}={dbof_pooling_method!r}: use 'max' or 'average'.",
                "dbof_pooling_method",
            )
        self.iterations = iterations
        self.add_batch_norm = dbof_add_batch_norm
        self.sample_random_frames = sample_random_frames
        self.cluster_size = dbof_cluster_size
        self.hidden_size = dbof_hidden_size
        self.pooling_method = dbof_pooling_method
        self.activation = tf.nn.sigmoid if dbof_activation == "sigmoid" else tf.nn.relu6
        if dbof_add_batch_norm:
            self.input_bn = model_util.batch_norm("input_bn")
            self.cluster_bn = model_util.batch_norm("cluster_bn")
            self.hidden1_bn = model_util.batch_norm("hidden1_bn")
        self.classifier = video_level_classifier(
            video_level_classifier_model, vocab_size, hyperparameters
        )

    def build(self, input_shape):
        """Creates the cluster and hidden weights (normal, stddev 1/√fan_in), no L2."""
        feature_size = input_shape[-1]
        normal = keras.initializers.RandomNormal
        self.cluster_weights = self.add_weight(
            name="cluster_weights",
            shape=(feature_size, self.cluster_size),
            initializer=normal(stddev=1 / math.sqrt(feature_size)),
        )
        self.hidden1_weights = self.add_weight(
            name="hidden1_weights",
            shape=(self.cluster_size, self.hidden_size),
            initializer=normal(stddev=1 / math.sqrt(self.cluster_size)),
        )
        if not self.add_batch_norm:
            self.cluster_biases = self.add_weight(
                name="cluster_biases",
                shape=(self.cluster_size,),
                initializer=normal(stddev=1 / math.sqrt(feature_size)),
            )
            self.hidden1_biases = self.add_weight(
                name="hidden1_biases",
                shape=(self.hidden_size,),
                initializer=normal(stddev=0.01),
            )

    def create_model(self, model_input, vocab_size, num_frames, is_training=True, **unused_params):
        """Returns the classifier's output on the pooled, hidden-layer features."""
        model_input = model_util.sampled_frames(
            model_input, num_frames, self.iterations, self.sample_random_frames
        )
        feature_size = model_input.shape[2]
        reshaped_input = tf.reshape(model_input, [-1, feature_size])
        if self.add_batch_norm:
            reshaped_input = self.input_bn(reshaped_input, training=is_training)
        activation = tf.matmul(reshaped_input, self.cluster_weights)
        if self.add_batch_norm:
            activation = self.cluster_bn(activation, training=is_training)
        else:
            activation += self.cluster_biases
        activation = self.activation(activation)
        activation = tf.reshape(activation, [-1, self.iterations, self.cluster_size])
        activation = model_util.FramePooling(activation, self.pooling_method)
        activation = tf.matmul(activation, self.hidden1_weights)
        if self.add_batch_norm:
            activation = self.hidden1_bn(activation, training=is_training)
        else:
            activation += self.hidden1_biases
        activation = self.activation(activation)
        return self.classifier.create_model(activation, vocab_size, is_training=is_training)


class LstmModel(models.BaseModel):
    """Stacked LSTMs over the frames; the top layer's state at each video's own length."""

    def __init__(
        self,
        vocab_size: int,
        lstm_cells: int = Hyperparameters.lstm_cells,
        lstm_layers: int = Hyperparameters.lstm_layers,
        video_level_classifier_model: str = Hyperparameters.video_level_classifier_model,
        **hyperparameters,
    ):
        """Creates the LSTM layers and the video-level classifier."""
        super().__init__(vocab_size)
        self.lstm_cells = lstm_cells
        self.lstm_layers = lstm_layers
        # No cuDNN kernel: the train, eval and serving steps are XLA-compiled, and XLA has
        # no cuDNN RNN op on GPUs. One attribute per layer: checkpoints do not see layers
        # held in a list.
        for layer in range(lstm_layers):
            setattr(
                self,
                f"lstm_{layer}",
                keras.layers.LSTM(
                    lstm_cells,
                    return_sequences=layer < lstm_layers - 1,
                    unit_forget_bias=True,
                    use_cudnn=False,
                ),
            )
        self.classifier = video_level_classifier(
            video_level_classifier_model, vocab_size, hyperparameters
        )

    def create_model(self, model_input, vocab_size, num_frames, is_training=True, **unused_params):
        """Returns the classifier's output on the top LSTM's final output.

        A mask built from num_frames makes each LSTM carry its state through the padding,
        so the final output is the one at the video's last real frame (the original's
        dynamic_rnn with sequence_length). The forget-gate bias starts at 1 (the original
        added 1 inside the gate; the gradients are the same).
        """
        mask = tf.sequence_mask(num_frames, tf.shape(model_input)[1])
        outputs = model_input
        for layer in range(self.lstm_layers):
            outputs = getattr(self, f"lstm_{layer}")(outputs, mask=mask)
        return self.classifier.create_model(outputs, vocab_size, is_training=is_training)


# ---------------------------------------------------------------------------------------
# The challenge winners' models.

RGB_FEATURES = 1024  # The winners' models pool rgb (the first 1024 features) and audio apart.


def rgb_and_audio(frames) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns frames [..., 1152] cut into rgb [..., :1024] and audio [..., 1024:]."""
    return frames[..., :RGB_FEATURES], frames[..., RGB_FEATURES:]


def check_rgb_and_audio(model: models.BaseModel, input_shape) -> None:
    """Raises a UserError unless the frames hold rgb (1024 features) and audio after it."""
    if input_shape[-1] <= RGB_FEATURES:
        raise errors.UserError(
            f"{{model}}={type(model).__name__} pools rgb (the first 1024 features) and "
            f"audio (the rest) apart; it needs {{feature_names}}=rgb,audio "
            f"{{feature_sizes}}=1024,128, not {input_shape[-1]} features in all.",
            "model",
            "feature_names",
            "feature_sizes",
        )


class LateFusionModel(models.BaseModel):
    """The 2017 winners' (WILLOW) skeleton, "LF" for late fusion of rgb and audio.

    Sampled frames → input batch norm → rgb and audio pooled apart, concatenated → hidden
    layer → optional Context Gating → video-level classifier (MoeModel, with
    --moe_prob_gating the gated MoE). The hidden layer is batch norm and ReLU6 with
    `relu`, else linear with a bias (the published configurations: the gate supplies the
    non-linearity). Frames are sampled in training and at evaluation alike (faithful, as
    DbofModel; eval.py seeds the sampling). Batch norm is always on: the published code's
    other branch was broken and never ran.
    """

    def __init__(
        self,
        vocab_size: int,
        video_pooling: keras.layers.Layer,
        audio_pooling: keras.layers.Layer,
        hidden_size: int | None,
        relu: bool,
        gating: bool,
        iterations: int,
        sample_random_frames: bool,
        video_level_classifier_model: str,
        hyperparameters: dict,
    ):
        """Creates the layers around the two pooling layers; hidden_size None: no hidden."""
        super().__init__(vocab_size)
        self.iterations = iterations
        self.sample_random_frames = sample_random_frames
        self.input_bn = model_util.batch_norm("input_bn")
        self.video_pooling = video_pooling
        self.audio_pooling = audio_pooling
        self.hidden = None
        if hidden_size:
            # Published: N(0, 1/√clusters), not 1/√fan_in; the bias N(0, 0.01).
            self.hidden = keras.layers.Dense(
                hidden_size,
                use_bias=not relu,
                kernel_initializer=model_util.normal(1 / math.sqrt(video_pooling.cluster_size)),
                bias_initializer=model_util.normal(0.01),
                name="hidden1",
            )
        self.hidden_bn = model_util.batch_norm("hidden1_bn") if hidden_size and relu else None
        self.gating = model_util.ContextGating(name="gating") if gating else None
        self.classifier = video_level_classifier(
            video_level_classifier_model, vocab_size, hyperparameters
        )

    def build(self, input_shape):
        """Checks that the frames hold rgb and audio."""
        check_rgb_and_audio(self, input_shape)

    def create_model(self, model_input, vocab_size, num_frames, is_training=True, **unused_params):
        """Returns the classifier's output on the pooled, hidden-layer features."""
        frames = model_util.sampled_frames(
            model_input, num_frames, self.iterations, self.sample_random_frames
        )
        rgb, audio = rgb_and_audio(self.input_bn(frames, training=is_training))
        activation = tf.concat(
            [
                self.video_pooling(rgb, training=is_training),
                self.audio_pooling(audio, training=is_training),
            ],
            1,
        )
        if self.hidden is not None:
            activation = self.hidden(activation)
        if self.hidden_bn is not None:
            activation = tf.nn.relu6(self.hidden_bn(activation, training=is_training))
        if self.gating is not None:
            activation = self.gating(activation, training=is_training)
        return self.classifier.create_model(activation, vocab_size, is_training=is_training)


class NetVLADModelLF(LateFusionModel):
    """NetVLAD pooling (NetRVLAD with --lightvlad); audio with half the clusters.

    The 2017 winners' best single model, "Gated NetVLAD": --netvlad_cluster_size=256
    --netvlad_hidden_size=1024 --iterations=300 --netvlad_relu=False --gating
    --moe_prob_gating --moe_l2=1e-6 (batch 80, Adam 2e-4, decay 0.8).
    """

    def __init__(
        self,
        vocab_size: int,
        netvlad_cluster_size: int = Hyperparameters.netvlad_cluster_size,
        netvlad_hidden_size: int = Hyperparameters.netvlad_hidden_size,
        netvlad_relu: bool = Hyperparameters.netvlad_relu,
        lightvlad: bool = Hyperparameters.lightvlad,
        gating: bool = Hyperparameters.gating,
        iterations: int = Hyperparameters.iterations,
        sample_random_frames: bool = Hyperparameters.sample_random_frames,
        video_level_classifier_model: str = Hyperparameters.video_level_classifier_model,
        **hyperparameters,
    ):
        """Creates the NetVLAD layers and the rest of the late-fusion model."""
        clusters = netvlad_cluster_size
        super().__init__(
            vocab_size,
            video_pooling=model_util.NetVLAD(clusters, not lightvlad, name="video_vlad"),
            audio_pooling=model_util.NetVLAD(clusters // 2, not lightvlad, name="audio_vlad"),
            hidden_size=netvlad_hidden_size,
            relu=netvlad_relu,
            gating=gating,
            iterations=iterations,
            sample_random_frames=sample_random_frames,
            video_level_classifier_model=video_level_classifier_model,
            hyperparameters=hyperparameters,
        )


class NetFVModelLF(LateFusionModel):
    """NetFV pooling (learned Fisher vectors); audio with half the clusters.

    Published "Gated NetFV": --fv_cluster_size=128 --fv_hidden_size=1024
    --fv_couple_weights=False --fv_relu=False --gating --moe_prob_gating --moe_l2=1e-6
    --iterations=300.
    """

    def __init__(
        self,
        vocab_size: int,
        fv_cluster_size: int = Hyperparameters.fv_cluster_size,
        fv_hidden_size: int = Hyperparameters.fv_hidden_size,
        fv_relu: bool = Hyperparameters.fv_relu,
        fv_couple_weights: bool = Hyperparameters.fv_couple_weights,
        fv_coupling_factor: float = Hyperparameters.fv_coupling_factor,
        gating: bool = Hyperparameters.gating,
        iterations: int = Hyperparameters.iterations,
        sample_random_frames: bool = Hyperparameters.sample_random_frames,
        video_level_classifier_model: str = Hyperparameters.video_level_classifier_model,
        **hyperparameters,
    ):
        """Creates the NetFV layers and the rest of the late-fusion model."""
        coupling = dict(couple_weights=fv_couple_weights, coupling_factor=fv_coupling_factor)
        super().__init__(
            vocab_size,
            video_pooling=model_util.NetFV(fv_cluster_size, **coupling, name="video_fv"),
            audio_pooling=model_util.NetFV(fv_cluster_size // 2, **coupling, name="audio_fv"),
            hidden_size=fv_hidden_size,
            relu=fv_relu,
            gating=gating,
            iterations=iterations,
            sample_random_frames=sample_random_frames,
            video_level_classifier_model=video_level_classifier_model,
            hyperparameters=hyperparameters,
        )


class SoftDbofModelLF(LateFusionModel):
    """Soft bag-of-words pooling; audio with an eighth of the clusters.

    Published: --dbof_cluster_size=8000 --dbof_hidden_size=1024 --dbof_relu=False
    --iterations=300 (moe_l2 left at 1e-8).
    """

    def __init__(
        self,
        vocab_size: int,
        dbof_cluster_size: int = Hyperparameters.dbof_cluster_size,
        dbof_hidden_size: int = Hyperparameters.dbof_hidden_size,
        dbof_relu: bool = Hyperparameters.dbof_relu,
        softdbof_maxpool: bool = Hyperparameters.softdbof_maxpool,
        fc_dimred: bool = Hyperparameters.fc_dimred,
        iterations: int = Hyperparameters.iterations,
        sample_random_frames: bool = Hyperparameters.sample_random_frames,
        video_level_classifier_model: str = Hyperparameters.video_level_classifier_model,
        **hyperparameters,
    ):
        """Creates the soft bag-of-words layers and the rest of the late-fusion model."""
        clusters, max_pool = dbof_cluster_size, softdbof_maxpool
        super().__init__(
            vocab_size,
            video_pooling=self.video_pooling_layer(clusters, max_pool),
            audio_pooling=model_util.SoftDbow(clusters // 8, max_pool, name="audio_dbow"),
            hidden_size=dbof_hidden_size if fc_dimred else None,
            relu=dbof_relu,
            gating=False,
            iterations=iterations,
            sample_random_frames=sample_random_frames,
            video_level_classifier_model=video_level_classifier_model,
            hyperparameters=hyperparameters,
        )

    @staticmethod
    def video_pooling_layer(clusters: int, max_pool: bool) -> keras.layers.Layer:
        """Returns the rgb pooling layer: a soft bag of words."""
        return model_util.SoftDbow(clusters, max_pool, name="video_dbow")


class GatedDbofModelLF(SoftDbofModelLF):
    """SoftDbofModelLF whose rgb bag of words is gated from its maximum (GatedDbow).

    Published "Gated Soft-DBoW": --dbof_cluster_size=4096 --dbof_hidden_size=1024
    --dbof_relu=False --iterations=300 --moe_l2=1e-6 (the published commands disagree
    on --moe_prob_gating: training without it, inference with it).
    """

    @staticmethod
    def video_pooling_layer(clusters: int, max_pool: bool) -> keras.layers.Layer:
        """Returns the rgb pooling layer: a gated bag of words (max_pool is not used)."""
        return model_util.GatedDbow(clusters, name="video_dbow")


class GruModel(models.BaseModel):
    """Stacked GRUs; every layer's final state, concatenated, goes to the classifier.

    The final state is each video's own last real frame's (masked steps carry it).
    Published: --gru_cells=1200 --gru_layers=2 --moe_l2=1e-6, batch 128.
    """

    def __init__(
        self,
        vocab_size: int,
        gru_cells: int = Hyperparameters.gru_cells,
        gru_layers: int = Hyperparameters.gru_layers,
        gru_backward: bool = Hyperparameters.gru_backward,
        gru_random_sequence: bool = Hyperparameters.gru_random_sequence,
        iterations: int = Hyperparameters.iterations,
        video_level_classifier_model: str = Hyperparameters.video_level_classifier_model,
        **hyperparameters,
    ):
        """Creates the GRU layers (TF1 GRUCell's gate order: reset before the product)."""
        super().__init__(vocab_size)
        self.gru_layers = gru_layers
        self.backward = gru_backward
        self.random_sequence = gru_random_sequence
        self.iterations = iterations
        # No cuDNN kernel: the steps are XLA-compiled (see LstmModel). One attribute each.
        for layer in range(gru_layers):
            setattr(
                self,
                f"gru_{layer}",
                keras.layers.GRU(
                    gru_cells,
                    return_sequences=True,
                    return_state=True,
                    reset_after=False,
                    use_cudnn=False,
                ),
            )
        self.classifier = video_level_classifier(
            video_level_classifier_model, vocab_size, hyperparameters
        )

    def create_model(self, model_input, vocab_size, num_frames, is_training=True, **unused_params):
        """Returns the classifier's output on the GRUs' final states."""
        num_frames = tf.cast(num_frames, tf.int32)
        if self.random_sequence:
            model_input = model_util.sampled_frames(model_input, num_frames, self.iterations, True)
            num_frames = tf.fill(tf.shape(num_frames), self.iterations)
        if self.backward:
            model_input = tf.reverse_sequence(model_input, num_frames, seq_axis=1, batch_axis=0)
        mask = tf.sequence_mask(num_frames, tf.shape(model_input)[1])
        outputs, states = model_input, []
        for layer in range(self.gru_layers):
            outputs, state = getattr(self, f"gru_{layer}")(outputs, mask=mask)
            states.append(state)
        return self.classifier.create_model(
            tf.concat(states, 1), vocab_size, is_training=is_training
        )


class NeXtVLADModel(models.BaseModel):
    """NeXtVLAD pooling (the 2018 winners' single model): no sampling, padding masked.

    rgb NeXtVLAD(K, G, λ) and audio NeXtVLAD(K/2, G/2, λ) → dropout → hidden layer (no
    bias, batch norm, no activation) → SE context gate → logistic classifier (He-normal,
    L2 --l2_penalty on weights and biases). Published (one branch of the final mixture,
    78.6M parameters): --nextvlad_cluster_size=112 --groups=8 --expansion=2
    --nextvlad_hidden_size=2048 --gating_reduction=16 --drop_rate=0.5 --l2_penalty=1e-5,
    batch 160, Adam 2e-4, decay 0.8 every 2M examples.
    """

    def __init__(
        self,
        vocab_size: int,
        nextvlad_cluster_size: int = Hyperparameters.nextvlad_cluster_size,
        nextvlad_hidden_size: int = Hyperparameters.nextvlad_hidden_size,
        groups: int = Hyperparameters.groups,
        expansion: int = Hyperparameters.expansion,
        gating_reduction: int = Hyperparameters.gating_reduction,
        drop_rate: float = Hyperparameters.drop_rate,
        l2_penalty: float = video_level_models.Hyperparameters.l2_penalty,
        **unused_hyperparameters,
    ):
        """Creates the layers."""
        super().__init__(vocab_size)
        clusters = nextvlad_cluster_size
        self.video_vlad = model_util.NeXtVLAD(clusters, groups, expansion, name="video_vlad")
        self.audio_vlad = model_util.NeXtVLAD(
            clusters // 2, groups // 2, expansion, name="audio_vlad"
        )
        self.dropout = keras.layers.Dropout(drop_rate)
        self.hidden = keras.layers.Dense(
            nextvlad_hidden_size, use_bias=False, kernel_initializer="he_normal", name="hidden1"
        )
        self.hidden_bn = model_util.batch_norm("hidden1_bn")
        self.gating = model_util.SEContextGating(gating_reduction, name="gating")
        self.logistic = keras.layers.Dense(
            vocab_size,
            kernel_initializer="he_normal",
            kernel_regularizer=models.slim_l2(l2_penalty),
            bias_regularizer=models.slim_l2(l2_penalty),
            name="logistic",
        )

    def build(self, input_shape):
        """Checks that the frames hold rgb and audio."""
        check_rgb_and_audio(self, input_shape)

    def logits(self, model_input, num_frames, is_training: bool) -> tf.Tensor:
        """Returns the classifier's logits, float32 [batch, vocab_size]."""
        rgb, audio = rgb_and_audio(model_input)
        pooled = tf.concat(
            [
                self.video_vlad(rgb, num_frames, training=is_training),
                self.audio_vlad(audio, num_frames, training=is_training),
            ],
            1,
        )
        hidden = self.hidden(self.dropout(pooled, training=is_training))
        hidden = self.hidden_bn(hidden, training=is_training)
        return tf.cast(self.logistic(self.gating(hidden, training=is_training)), tf.float32)

    def create_model(self, model_input, vocab_size, num_frames, is_training=True, **unused_params):
        """Returns {"predictions": σ(logits), "logits": logits}."""
        logits = self.logits(model_input, num_frames, is_training)
        return {"predictions": tf.sigmoid(logits), "logits": logits}


def distillation_loss(mixture_logits, branch_logits, temperature: float) -> tf.Tensor:
    """Returns mean over videos of Σ_m KL(q ‖ q_m): on-the-fly knowledge distillation.

    q = softmax(z / T) over the classes of the mixture's logits z [batch, classes], q_m
    the same of branch m's logits [batch, branches, classes]. The mixture (the teacher)
    is not held constant: gradients reach it too, as published.
    """
    teacher = tf.nn.log_softmax(mixture_logits / temperature)[:, None, :]
    students = tf.nn.log_softmax(branch_logits / temperature)
    divergences = tf.reduce_sum(tf.exp(teacher) * (teacher - students), axis=2)
    return tf.reduce_mean(tf.reduce_sum(divergences, axis=1))


class MixNeXtVladModel(models.BaseModel):
    """A mixture of NeXtVLADModel branches, trained with on-the-fly distillation.

    The mixture weights are softmax(W · BN(mean of the frames) + b) per video; the
    mixture's logits are the weighted sum of the branches'. In training each branch's
    predictions are also trained on the labels ("aux_predictions") and drawn towards
    the mixture's (cl_lambda times distillation_loss at cl_temperature, as the
    "regularization_loss"). Faithful: the frame mean counts the padding frames too.
    Published (the 2018 winners' final model, 235.9M parameters): --mix_number=3
    --cl_temperature=3 --cl_lambda=9 and each branch as NeXtVLADModel's.
    """

    def __init__(
        self,
        vocab_size: int,
        mix_number: int = Hyperparameters.mix_number,
        cl_temperature: float = Hyperparameters.cl_temperature,
        cl_lambda: float = Hyperparameters.cl_lambda,
        **hyperparameters,
    ):
        """Creates the branches and the mixture gate."""
        super().__init__(vocab_size)
        self.mix_number = mix_number
        self.cl_temperature = cl_temperature
        self.cl_lambda = cl_lambda
        for branch in range(mix_number):
            setattr(self, f"branch_{branch}", NeXtVLADModel(vocab_size, **hyperparameters))
        self.mix_bn = model_util.batch_norm("mix_bn")
        self.mix_gate = keras.layers.Dense(mix_number, name="mix_gate")

    def create_model(self, model_input, vocab_size, num_frames, is_training=True, **unused_params):
        """Returns predictions and logits; in training also aux_predictions and the loss."""
        frame_mean = self.mix_bn(tf.reduce_mean(model_input, 1), training=is_training)
        mixture = tf.nn.softmax(tf.cast(self.mix_gate(frame_mean), tf.float32))
        branch_logits = tf.stack(
            [
                getattr(self, f"branch_{branch}").logits(model_input, num_frames, is_training)
                for branch in range(self.mix_number)
            ],
            1,
        )
        logits = tf.reduce_sum(mixture[:, :, None] * branch_logits, 1)
        outputs = {"predictions": tf.sigmoid(logits), "logits": logits}
        if is_training:
            outputs["aux_predictions"] = tf.sigmoid(tf.transpose(branch_logits, [1, 0, 2]))
            outputs["regularization_loss"] = self.cl_lambda * distillation_loss(
                logits, branch_logits, self.cl_temperature
            )
        return outputs


MODELS = {
    cls.__name__: cls
    for cls in (
        FrameLevelLogisticModel,
        DbofModel,
        LstmModel,
        NetVLADModelLF,
        NetFVModelLF,
        SoftDbofModelLF,
        GatedDbofModelLF,
        GruModel,
        NeXtVLADModel,
        MixNeXtVladModel,
    )
}
