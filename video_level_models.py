"""Models that classify a video from its video-level (mean) features."""

import dataclasses

import keras
import tensorflow as tf

import errors
import model_util
import models
from settings import AT_LEAST_ONE, NON_NEGATIVE, Settings, setting


@dataclasses.dataclass(frozen=True)
class Hyperparameters(Settings):
    """The video-level models' hyperparameter flags, recorded in model_flags.json."""

    moe_num_mixtures: int = setting(
        2,
        "The number of mixtures (excluding the dummy 'expert') used for MoeModel.",
        AT_LEAST_ONE,
    )
    moe_l2: float = setting(1e-8, "L2 penalty of MoeModel's gate and expert weights.", NON_NEGATIVE)
    moe_prob_gating: bool = setting(
        False, "Context Gating on MoeModel's probabilities: the gated MoE of the 2017 winners."
    )
    moe_prob_gating_input: str = setting(
        "prob",
        "What MoeModel's probability gates are computed from: 'prob' (the probabilities "
        "themselves, as published) or 'input' (the MoE's input).",
    )
    l2_penalty: float = setting(
        1e-8,
        "L2 penalty of LogisticModel's weights (and of NeXtVLAD's classifier).",
        NON_NEGATIVE,
    )


class LogisticModel(models.BaseModel):
    """Logistic regression: one sigmoid unit per class."""

    def __init__(
        self,
        vocab_size: int,
        l2_penalty: float = Hyperparameters.l2_penalty,
        **unused_hyperparameters,
    ):
        """Creates the weights [features, vocab_size] (Glorot uniform, L2) and zero biases."""
        super().__init__(vocab_size)
        self.logistic = keras.layers.Dense(
            vocab_size,
            activation="sigmoid",
            kernel_regularizer=models.slim_l2(l2_penalty),
            name="fully_connected",
        )

    def create_model(self, model_input, vocab_size, **unused_params):
        """Returns {"predictions": sigmoid(x W + b)}."""
        return {"predictions": self.logistic(model_input)}


class MoeModel(models.BaseModel):
    """A softmax over a mixture of logistic experts, per class, with a dummy 'always 0' expert.

    The gates and experts are dense layers of vocab_size * (num_mixtures + 1) and
    vocab_size * num_mixtures outputs, grouped class-major: class c uses the consecutive
    columns c*(M+1) ... c*(M+1)+M of the gates. With moe_prob_gating the probabilities
    are Context-Gated (p ⊙ σ(BN(g W)), V × V weights without L2), as the 2017 winners'
    "gated MoE".
    """

    def __init__(
        self,
        vocab_size: int,
        moe_num_mixtures: int = Hyperparameters.moe_num_mixtures,
        moe_l2: float = Hyperparameters.moe_l2,
        moe_prob_gating: bool = Hyperparameters.moe_prob_gating,
        moe_prob_gating_input: str = Hyperparameters.moe_prob_gating_input,
        **unused_hyperparameters,
    ):
        """Creates the bias-free gates and the experts, both L2-regularised."""
        super().__init__(vocab_size)
        gating_inputs = {"prob": False, "input": True}
        self.gates_from_input = errors.chosen(
            moe_prob_gating_input, gating_inputs, "moe_prob_gating_input"
        )
        self.num_mixtures = moe_num_mixtures
        self.gates = keras.layers.Dense(
            vocab_size * (moe_num_mixtures + 1),
            use_bias=False,
            kernel_regularizer=models.slim_l2(moe_l2),
            name="gates",
        )
        self.experts = keras.layers.Dense(
            vocab_size * moe_num_mixtures,
            kernel_regularizer=models.slim_l2(moe_l2),
            name="experts",
        )
        self.prob_gating = (
            model_util.ContextGating(vocab_size, name="prob_gating") if moe_prob_gating else None
        )

    def create_model(self, model_input, vocab_size, is_training=False, **unused_params):
        """Returns {"predictions": Σ_m gate_m · expert_m} per class, the dummy expert adding 0."""
        num_mixtures = self.num_mixtures
        gate_activations = self.gates(model_input)
        expert_activations = self.experts(model_input)
        gating_distribution = tf.nn.softmax(tf.reshape(gate_activations, [-1, num_mixtures + 1]))
        expert_distribution = tf.nn.sigmoid(tf.reshape(expert_activations, [-1, num_mixtures]))
        probabilities_by_class_and_batch = tf.reduce_sum(
            gating_distribution[:, :num_mixtures] * expert_distribution, 1
        )
        probabilities = tf.reshape(probabilities_by_class_and_batch, [-1, vocab_size])
        if self.prob_gating is not None:
            gate_input = model_input if self.gates_from_input else probabilities
            probabilities = self.prob_gating(gate_input, probabilities, training=is_training)
        return {"predictions": probabilities}


MODELS = {cls.__name__: cls for cls in (LogisticModel, MoeModel)}
