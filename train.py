r"""Trains a YouTube-8M video classifier and writes checkpoints and summaries.

  python train.py --train_data_pattern='/tmp/yt8m_sample/video/train*.tfrecord' \
      --feature_names=mean_rgb,mean_audio --feature_sizes=1024,128 \
      --model=LogisticModel --train_dir=/tmp/yt8m_model

Run it again with the same --train_dir to resume from the latest checkpoint. Watch it with
`tensorboard --logdir=/tmp/yt8m_model`; evaluate it with eval.py. With --segment_labels it
trains a frame-level model on the rated 5-frame segments of the 2019 files, the loss over
the rated (segment, class) pairs only: run on a video-level --train_dir, it fine-tunes it.

The loop, top to bottom: pick a distribution strategy (CPU, one GPU, several GPUs or
several workers), prepare train_dir (model_flags.json), build reader, model and optimizer,
restore the latest checkpoint (and start the weight averages of --ema_decay), then run
the train step over the data, logging every step, computing Hit@1/PERR/GAP every 10
steps, and checkpointing at the first of those steps, every --export_model_steps steps,
every 15 minutes, on SIGINT/SIGTERM and at the end.
"""

import quiet_tensorflow  # noqa: F401 (first: hides TensorFlow's start-up noise)

# isort: split
import contextlib
import dataclasses
import json
import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import atomic_write
import checkpoint_files
import cli
import errors
import eval_util
import features
import losses
import models
import readers
import summaries
import trained_model
from errors import UserError
from settings import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, Settings, setting

CHECKPOINT_PREFIX = "model.ckpt"
CHECKPOINT_EVERY_SECONDS = 15 * 60  # The original Supervisor's save_model_secs.
HISTOGRAMS_EVERY_SECONDS = 120  # The original Supervisor's save_summaries_secs.
METRICS_EVERY_STEPS = 10


@dataclasses.dataclass(frozen=True)
class TrainConfig(Settings):
    """The training settings, each a flag of train.py; a test or notebook builds one directly."""

    train_dir: str = setting("/tmp/yt8m_model/")
    train_data_pattern: str = setting(
        "", "File glob for the training TFRecord files (local, gs:// or any tf.io.gfile path)."
    )
    feature_names: str = setting("mean_rgb")
    feature_sizes: str = setting("1024")
    frame_features: bool = setting(False)
    id_feature: str = setting("id")
    segment_labels: bool = setting(False)
    model: str = setting("LogisticModel", "Model class name, from the model modules.")
    print_model_summary: bool = setting(
        False, "Print the model's layers and parameter counts, then exit without training."
    )
    start_new_model: bool = setting(
        False, "Delete train_dir and start over instead of resuming from it."
    )
    num_gpu: int = setting(1, "Upper limit on the number of local GPUs used.", NON_NEGATIVE)
    batch_size: int = setting(1024)
    label_loss: str = setting("CrossEntropyLoss", "Loss class name, from losses.py.")
    regularization_penalty: float = setting(
        1.0, "Weight of the regularization loss; the label loss has 1.", NON_NEGATIVE
    )
    base_learning_rate: float = setting(0.01, "Initial learning rate.", NON_NEGATIVE)
    learning_rate_decay: float = setting(
        0.95, "Factor applied once per learning_rate_decay_examples.", POSITIVE
    )
    learning_rate_decay_examples: float = setting(
        4000000, "Examples between learning-rate decays.", POSITIVE
    )
    num_epochs: int = setting(5, "Passes over the training data.", AT_LEAST_ONE)
    max_steps: int | None = setting(
        None, "Stop once the global step reaches this many steps.", NON_NEGATIVE
    )
    export_model_steps: int = setting(1000, "Steps between extra checkpoint saves.", AT_LEAST_ONE)
    num_readers: int = setting(8)
    optimizer: str = setting(
        "AdamOptimizer",
        "TF1 optimizer name: AdamOptimizer, GradientDescentOptimizer, AdagradOptimizer, "
        "RMSPropOptimizer, AdadeltaOptimizer, FtrlOptimizer or MomentumOptimizer.",
    )
    clip_gradient_norm: float = setting(
        1.0, "Clip each gradient tensor to this L2 norm; 0 disables.", NON_NEGATIVE
    )
    log_device_placement: bool = setting(False, "Log the device of every op.")
    mixed_precision: str = setting(
        "none",
        "Keras mixed-precision policy of the model's layers: none (float32, as the "
        "original), mixed_bfloat16, or mixed_float16 (with dynamic loss scaling). Weights, "
        "losses, metrics and checkpoints stay float32.",
    )
    ema_decay: float = setting(
        0.0,
        "Keep an exponential moving average of the trainable weights, updated after each "
        "step with this decay (e.g. 0.9999), in the checkpoints; eval.py, export_model.py "
        "and inference.py then use the averages. 0 disables.",
        FRACTION,
    )
    # Not a flag of its own: the values of the model modules' hyperparameter flags.
    model_hyperparameters: dict = dataclasses.field(default_factory=models.default_hyperparameters)

    def model_flags(self) -> dict:
        """Returns what model_flags.json records: the original five keys and the others."""
        return {
            "model": self.model,
            "feature_sizes": self.feature_sizes,
            "feature_names": self.feature_names,
            "frame_features": self.frame_features,
            "label_loss": self.label_loss,
            "id_feature": self.id_feature,
            **self.model_hyperparameters,
        }


# ---------------------------------------------------------------------------------------
# Devices and roles.


def task_from_tf_config() -> tuple[str, int, dict]:
    """Returns (task type, task index, cluster) from TF_CONFIG; master/0 without one."""
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError as error:
        raise UserError(f"TF_CONFIG is not valid JSON: {error}") from None
    task = tf_config.get("task") or {"type": "master", "index": 0}
    return task.get("type", "master"), int(task.get("index", 0)), tf_config.get("cluster") or {}


def distribution_strategy(num_gpu: int) -> tf.distribute.Strategy:
    """Returns the strategy for this machine and TF_CONFIG.

    Several workers in TF_CONFIG: synchronous MultiWorkerMirroredStrategy ('master' is
    treated as 'chief'). Otherwise MirroredStrategy over the first num_gpu GPUs when there
    are two or more, else the default strategy (one GPU or the CPU).
    """
    task_type, task_index, cluster = task_from_tf_config()
    if task_type == "ps":
        raise UserError(
            "TF_CONFIG task type 'ps': parameter servers are not used; training is "
            "synchronous across workers (MultiWorkerMirroredStrategy). Start only "
            "chief/master and worker tasks."
        )
    if task_type not in ("master", "chief", "worker"):
        raise UserError(f"TF_CONFIG: Invalid task_type: {task_type}.")
    if sum(len(addresses) for addresses in cluster.values()) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=cluster_resolver(task_type, task_index, cluster)
        )
    all_gpus = tf.config.list_physical_devices("GPU")
    gpus = all_gpus[:num_gpu]
    if len(gpus) < len(all_gpus):
        try:  # So that --num_gpu=0 trains on the CPU, as the original did.
            tf.config.set_visible_devices(gpus, "GPU")
        except RuntimeError:
            logging.warning("TensorFlow is already initialized; --num_gpu cannot hide GPUs.")
    if gpus:
        logging.info("Using the following GPUs to train: %s", [gpu.name for gpu in gpus])
    else:
        logging.info("No GPUs found. Training on CPU.")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(len(gpus))])
    return tf.distribute.get_strategy()


def cluster_resolver(task_type: str, task_index: int, cluster: dict):
    """Returns the resolver of a TF_CONFIG cluster, the original's 'master' named 'chief'."""
    chief_named = {
        ("chief" if kind == "master" else kind): hosts
        for kind, hosts in cluster.items()
        if kind != "ps"
    }
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(chief_named),
        task_type="chief" if task_type == "master" else task_type,
        task_id=task_index,
        rpc_layer="grpc",
    )


def num_workers(strategy: tf.distribute.MultiWorkerMirroredStrategy) -> int:
    """Returns the number of worker processes (chief included) training together."""
    cluster = strategy.cluster_resolver.cluster_spec()
    return sum(cluster.num_tasks(job) for job in cluster.jobs)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one process that writes checkpoints, summaries and model_flags.json."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def task_name() -> str:
    """Returns '/job:<type>/task:<index>', the prefix of the original's log lines."""
    task_type, task_index, _ = task_from_tf_config()
    return f"/job:{task_type}/task:{task_index}"


# ---------------------------------------------------------------------------------------
# Optimizer, learning rate and gradients.


class StaircaseDecay(keras.optimizers.schedules.LearningRateSchedule):
    """base · decay ^ floor(step · global_batch / decay_examples): decay counted in examples."""

    def __init__(self, base_learning_rate, decay, decay_examples, global_batch_size):
        self.base_learning_rate = base_learning_rate
        self.decay = decay
        self.decay_examples = decay_examples
        self.global_batch_size = global_batch_size

    def __call__(self, step):
        """Returns the learning rate after `step` steps."""
        examples = tf.cast(step, tf.float64) * self.global_batch_size
        exponent = tf.floor(examples / self.decay_examples)
        rate = self.base_learning_rate * tf.pow(tf.cast(self.decay, tf.float64), exponent)
        return tf.cast(rate, tf.float32)

    def get_config(self):
        """Returns the constructor arguments, for Keras serialization."""
        return {
            "base_learning_rate": self.base_learning_rate,
            "decay": self.decay,
            "decay_examples": self.decay_examples,
            "global_batch_size": self.global_batch_size,
        }


def tf1_optimizers() -> dict:
    """Returns a constructor per TF1 optimizer name, with the TF1 defaults."""
    keras_optimizers = keras.optimizers
    return {
        "AdamOptimizer": lambda lr: keras_optimizers.Adam(lr, 0.9, 0.999, epsilon=1e-8),
        "GradientDescentOptimizer": lambda lr: keras_optimizers.SGD(lr),
        "AdagradOptimizer": lambda lr: keras_optimizers.Adagrad(lr, initial_accumulator_value=0.1),
        "RMSPropOptimizer": lambda lr: keras_optimizers.RMSprop(lr, rho=0.9, epsilon=1e-10),
        "AdadeltaOptimizer": lambda lr: keras_optimizers.Adadelta(lr, rho=0.95, epsilon=1e-8),
        "FtrlOptimizer": lambda lr: keras_optimizers.Ftrl(lr, initial_accumulator_value=0.1),
        # TF1 required a momentum argument and the original crashed; 0.9 is the usual value.
        "MomentumOptimizer": lambda lr: keras_optimizers.SGD(lr, momentum=0.9),
    }


def create_optimizer(config: TrainConfig, global_batch_size: int):
    """Returns the --optimizer with the staircase learning-rate schedule.

    Under mixed_float16 it is wrapped in Keras' dynamic loss scaling; checkpoint_objects
    saves the inner optimizer, so checkpoints look alike in every precision.
    """
    schedule = StaircaseDecay(
        config.base_learning_rate,
        config.learning_rate_decay,
        config.learning_rate_decay_examples,
        global_batch_size,
    )
    optimizer = errors.chosen(config.optimizer, tf1_optimizers(), "optimizer")(schedule)
    if config.mixed_precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


MIXED_PRECISION_POLICIES = {
    "none": "float32",
    "mixed_bfloat16": "mixed_bfloat16",
    "mixed_float16": "mixed_float16",
}


@contextlib.contextmanager
def precision_policy(mixed_precision: str) -> Iterator[None]:
    """Within `with`, layers built compute in the --mixed_precision policy's type.

    Keras keeps the policy process-wide; the previous one comes back on exit.
    """
    policy = errors.chosen(mixed_precision, MIXED_PRECISION_POLICIES, "mixed_precision")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def checkpoint_objects(model, optimizer, weight_average=None) -> dict:
    """Returns what a checkpoint holds: model, optimizer (without loss scaling), averages.

    The weight averages of --ema_decay are saved under "ema" where there are some.

    The loss scale of mixed_float16 is not saved: it restarts at its initial value on
    resume and settles within a few steps, and checkpoints of every precision match.
    """
    objects = {"model": model, "optimizer": getattr(optimizer, "inner_optimizer", optimizer)}
    if weight_average is not None:
        objects[trained_model.WEIGHT_AVERAGE_KEY] = weight_average
    return objects


def clipped_gradients(gradients: list, max_norm: float, loss_scale=1.0) -> list:
    """Clips each gradient tensor to max_norm on its own (not a global-norm clip).

    Gradients of a loss multiplied by loss_scale are clipped to max_norm · loss_scale,
    which is the same clip once they are divided by it.
    """
    if max_norm <= 0:
        return gradients
    limit = max_norm * loss_scale
    return [None if grad is None else tf.clip_by_norm(grad, limit) for grad in gradients]


# ---------------------------------------------------------------------------------------
# The train step.


def make_train_step(
    model, optimizer, label_loss_fn, config: TrainConfig, strategy, weight_average=None
):
    """Returns a tf.function running one synchronous step on every replica.

    Each replica's loss is the mean over its part of the batch; the replicas' gradients
    are summed (as the original summed its towers'), clipped per tensor, then applied.
    With one replica the whole step is XLA-compiled. Under mixed_float16 the gradients
    are those of the scaled loss until the optimizer unscales them, so the clipping norm
    is scaled alike. With a weight_average, its averages move towards the new weights
    (config.ema_decay) after each step, also after a step that loss scaling skipped (the
    weights are unchanged then, as for TF1's average after a zero update).
    """
    num_replicas = strategy.num_replicas_in_sync
    loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def replica_step(batch):
        steps_before = tf.identity(optimizer.iterations) if loss_scaled else None
        with tf.GradientTape() as tape:
            outputs = models.forward(
                model, batch["video_matrix"], batch["num_frames"], training=True
            )
            label_loss = models.label_loss(
                outputs, batch["labels"], label_loss_fn, batch.get("label_weights")
            )
            reg_loss = tf.add_n([tf.constant(0.0), *model.losses])
            if "regularization_loss" in outputs:
                reg_loss += outputs["regularization_loss"]
            final_loss = config.regularization_penalty * reg_loss + label_loss
            loss_scale = optimizer.scale_loss(tf.constant(1.0))
            scaled_loss = final_loss * loss_scale
        gradients = tape.gradient(scaled_loss, model.trainable_variables)
        replica_context = tf.distribute.get_replica_context()
        if num_replicas > 1:
            gradients = replica_context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        gradients = clipped_gradients(gradients, config.clip_gradient_norm, loss_scale)
        # The Keras optimizer sums gradients across replicas itself; they are summed and
        # clipped already, so hand each replica its share.
        gradients = [None if g is None else g / num_replicas for g in gradients]
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        if loss_scaled:
            # A step skipped for non-finite gradients still counts, as every step did.
            optimizer.iterations.assign(steps_before + 1)
        if weight_average is not None:
            weight_average.update(model.trainable_variables, config.ema_decay)
        return {
            "label_loss": label_loss,
            "reg_loss": reg_loss,
            "predictions": outputs["predictions"],
        }

    step = tf.function(replica_step, jit_compile=num_replicas == 1)

    @tf.function
    def distributed_step(batch):
        outputs = strategy.run(step, args=(readers.numeric_features(batch),))
        mean = tf.distribute.ReduceOp.MEAN
        return {
            "label_loss": strategy.reduce(mean, outputs["label_loss"], axis=None),
            "reg_loss": strategy.reduce(mean, outputs["reg_loss"], axis=None),
            "predictions": outputs["predictions"],
        }

    return distributed_step


def training_batches(dataset: tf.data.Dataset, strategy) -> tf.data.Dataset:
    """Returns the batches the train step takes, prefetched onto the device that runs it.

    Several replicas: the strategy's distributed dataset places each replica's share. One
    GPU: prefetched onto it while the step runs. The CPU: as they are (a prefetch to the
    CPU device measured 115 -> 71 steps/s of a tiny model's loop).
    """
    dataset = dataset.map(readers.numeric_features)
    if strategy is not tf.distribute.get_strategy():  # Outside a scope: the default one.
        return strategy.experimental_distribute_dataset(dataset)
    if tf.config.list_logical_devices("GPU"):
        return prefetched_to(dataset, "/gpu:0")
    return dataset


def prefetched_to(dataset: tf.data.Dataset, device: str) -> tf.data.Dataset:
    """Returns the dataset with its next batches copied onto the device ahead of use."""
    return dataset.apply(tf.data.experimental.prefetch_to_device(device))


def local_values(strategy, value) -> np.ndarray:
    """Returns this process's per-replica values of a tensor, concatenated, as NumPy."""
    return np.concatenate([part.numpy() for part in strategy.experimental_local_results(value)])


# ---------------------------------------------------------------------------------------
# train_dir, checkpoints and summaries.


def prepare_train_dir(config: TrainConfig, chief: bool) -> None:
    """Starts over if asked, creates train_dir and writes or checks model_flags.json.

    The chief also removes what an interrupted checkpoint save left there.
    """
    with atomic_write.write_failures_explained(
        config.train_dir, "nothing was trained", output=f"--train_dir={config.train_dir}"
    ):
        if chief and config.start_new_model and tf.io.gfile.exists(config.train_dir):
            logging.info("%s: Removing existing train directory.", task_name())
            tf.io.gfile.rmtree(config.train_dir)
        tf.io.gfile.makedirs(config.train_dir)
    if chief:
        checkpoint_files.remove_leftovers(config.train_dir)
        trained_model.write_or_check_model_flags(config.train_dir, config.model_flags())


class Checkpointer:
    """Saves model.ckpt-<step> in train_dir, all kept, as the original's Saver did.

    In multi-worker training every worker must take part in saving; only the chief writes
    into train_dir, the others into a temporary directory that is then removed. There,
    saves follow the global step only: workers' clocks would not agree on a 15-minute mark.
    """

    def __init__(
        self, checkpoint: tf.train.Checkpoint, train_dir: str, chief: bool, time_based: bool
    ):
        self.chief = chief
        self.time_based = time_based
        directory = train_dir if chief else tempfile.mkdtemp(prefix="yt8m_worker_ckpt_")
        self.manager = tf.train.CheckpointManager(
            checkpoint, directory, max_to_keep=None, checkpoint_name=CHECKPOINT_PREFIX
        )
        self.last_save_time = time.time()
        self.last_saved_step = None
        self.last_export_step = None  # The original's export_model_steps cadence.

    def save(self, global_step: int) -> None:
        """Saves a checkpoint for global_step unless one was just saved for it.

        Raises:
          UserError: the file system refused the save (a full disk); what it had written
            is removed, and the previous checkpoint stays the latest.
        """
        if global_step == self.last_saved_step:
            return
        new = os.path.join(self.manager.directory, f"{CHECKPOINT_PREFIX}-{global_step}")
        previous = self.manager.latest_checkpoint
        with atomic_write.write_failures_explained(
            self.manager.directory,
            f"{previous} is still the latest checkpoint, which train.py resumes from"
            if previous
            else "no checkpoint was saved",
            output=f"checkpoint {new}",
        ):
            try:
                path = self.manager.save(checkpoint_number=global_step)
            except (tf.errors.OpError, OSError):
                checkpoint_files.remove_unlisted(new)
                raise
        if self.chief:
            logging.info("%s: Saved checkpoint %s", task_name(), path)
        else:
            tf.io.gfile.rmtree(self.manager.directory)
        self.last_save_time = time.time()
        self.last_saved_step = global_step

    def time_due(self) -> bool:
        """True once 15 minutes have passed since the last save (single-worker only)."""
        return self.time_based and time.time() - self.last_save_time >= CHECKPOINT_EVERY_SECONDS

    def due(self, global_step: int, export_model_steps: int) -> bool:
        """True at the first metrics step, every export_model_steps after, every 15 min."""
        if self.time_due():
            return True
        if global_step % METRICS_EVERY_STEPS != 0:
            return False
        if self.last_export_step is None or (
            global_step - self.last_export_step >= export_model_steps
        ):
            self.last_export_step = global_step
            return True
        return False


def restore_latest(checkpoint: tf.train.Checkpoint, config: TrainConfig) -> str | None:
    """Restores weights, optimizer state and global step from train_dir's latest checkpoint.

    Returns:
      The checkpoint restored, or None for a new model.
    """
    if config.start_new_model:
        logging.info("%s: Flag 'start_new_model' is set. Building a new model.", task_name())
        return None
    latest = checkpoint_files.latest(config.train_dir)
    if not latest:
        logging.info("%s: No checkpoint file found. Building a new model.", task_name())
        return None
    if not any(name.startswith("optimizer/") for name in checkpoint_files.keys(latest)):
        raise UserError(
            f"{latest} holds model weights only (as average_checkpoints.py writes them): "
            "evaluate, export or predict with it, and resume training from the {train_dir} "
            "it was averaged from.",
            "train_dir",
        )
    logging.info("%s: Restoring from checkpoint %s", task_name(), latest)
    # Partial: weight averages, if any, are restored on their own (start_weight_average).
    trained_model.restore_matching(checkpoint, latest)
    return latest


def start_weight_average(
    config: TrainConfig, model, restored: str | None
) -> trained_model.WeightAverage | None:
    """Returns the weight averages of --ema_decay (None without it), in the current scope.

    They start from the model's weights (new or restored) and continue the averages of
    the restored checkpoint where it holds them. Without --ema_decay, the averages of a
    restored checkpoint are dropped, with a warning: later checkpoints hold none.
    """
    held = restored is not None and trained_model.holds_weight_averages(restored)
    if not config.ema_decay:
        if held:
            logging.warning(
                "%s: %s holds weight averages; without --ema_decay they are dropped and "
                "later checkpoints hold the weights only.",
                task_name(),
                restored,
            )
        return None
    weight_average = trained_model.WeightAverage(model.trainable_variables)
    if held:
        trained_model.restore_weight_averages(weight_average, restored)
        logging.info("%s: Continuing the weight averages of %s.", task_name(), restored)
    elif restored is not None:
        logging.info(
            "%s: %s holds no weight averages; they start from its weights.", task_name(), restored
        )
    logging.info("%s: Averaging the weights with decay %g.", task_name(), config.ema_decay)
    return weight_average


class StopOnSignal:
    """Within `with`, records SIGINT/SIGTERM so the loop can checkpoint and exit cleanly.

    The previous handlers come back on exit. Off the main thread, where Python allows no
    handlers, signals keep their default behaviour.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal_number = None
        self.previous = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            self.previous = {number: signal.signal(number, self.record) for number in self.SIGNALS}
        return self

    def __exit__(self, *unused_exception) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def record(self, signal_number, unused_frame):
        """Signal handler: remember the signal; the loop stops after the current step."""
        self.signal_number = signal_number


# ---------------------------------------------------------------------------------------
# The job.


def train(config: TrainConfig, strategy: tf.distribute.Strategy | None = None) -> int:
    """Trains until the data runs out, max_steps is reached or a signal arrives.

    Returns:
      The final global step.
    """
    logging.info("%s: Tensorflow version: %s.", task_name(), tf.__version__)
    tf.debugging.set_log_device_placement(config.log_device_placement)
    strategy = strategy or distribution_strategy(config.num_gpu)
    chief = is_chief(strategy)
    reader = readers.create_reader(
        config.frame_features,
        config.feature_names,
        config.feature_sizes,
        id_feature=config.id_feature,
        # Frames stay uint8 through the input pipeline; the XLA-compiled step dequantizes.
        quantized_frames=config.frame_features,
        segment_labels=config.segment_labels,
    )
    train_files = training_files(config, strategy)
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    # Every name (model, optimizer, loss) is checked before model_flags.json is written.
    global_batch_size = config.batch_size * strategy.num_replicas_in_sync
    with strategy.scope(), precision_policy(config.mixed_precision):
        model = models.create_built_model(config.model, reader, config.model_hyperparameters)
        optimizer = create_optimizer(config, global_batch_size)
        optimizer.build(model.trainable_variables)
    label_loss_fn = errors.chosen(config.label_loss, losses.LOSSES, "label_loss")()
    if config.segment_labels and not label_loss_fn.takes_label_weights:
        raise UserError(
            f"{{label_loss}}={config.label_loss} cannot weight its terms, and "
            "{segment_labels} trains on the rated (segment, class) pairs only; use "
            "CrossEntropyLoss or HingeLoss.",
            "label_loss",
            "segment_labels",
        )
    prepare_train_dir(config, chief)
    restored = restore_latest(tf.train.Checkpoint(**checkpoint_objects(model, optimizer)), config)
    with strategy.scope():
        weight_average = start_weight_average(config, model, restored)
    checkpoint = tf.train.Checkpoint(**checkpoint_objects(model, optimizer, weight_average))
    checkpointer = Checkpointer(checkpoint, config.train_dir, chief, time_based=not multi_worker)

    logging.info("Using batch size of %d for training.", global_batch_size)
    logging.info("Number of training files: %d.", len(train_files))
    dataset = reader.get_dataset(
        config.train_data_pattern,
        global_batch_size,
        training=True,
        num_epochs=-1 if multi_worker else config.num_epochs,
        num_readers=config.num_readers,
    )
    train_step = make_train_step(model, optimizer, label_loss_fn, config, strategy, weight_average)
    writer = tf.summary.create_file_writer(config.train_dir) if chief else None
    with reader.errors_explained(config.train_data_pattern):
        return run_loop(
            config,
            strategy,
            training_batches(dataset, strategy),
            train_step,
            model,
            optimizer,
            checkpointer,
            writer,
        )


def training_files(config: TrainConfig, strategy: tf.distribute.Strategy) -> list[str]:
    """Returns the training files; checks that several workers can share them."""
    no_files = f"Unable to find training files. data_pattern='{config.train_data_pattern}'."
    train_files = cli.require_files(config.train_data_pattern, no_files, no_files)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return train_files
    if config.max_steps is None:
        # Workers whose shards run out at different steps would block each other.
        raise UserError(
            "Training on several workers needs --max_steps (the data then repeats until "
            "every worker has run that many steps)."
        )
    workers = num_workers(strategy)
    if len(train_files) < workers:
        # tf.data then shards by record instead of by file, on each worker's own shuffle.
        logging.warning(
            "%d training files for %d workers: workers may read the same records; "
            "split the data into at least one file per worker.",
            len(train_files),
            workers,
        )
    return train_files


def run_loop(config, strategy, dataset, train_step, model, optimizer, checkpointer, writer) -> int:
    """Runs train steps over the dataset; returns the final global step.

    The device runs one step ahead of the host (TrainingMetrics logs a step once the next
    is dispatched), except at the metrics steps (every 10), where checkpoints are taken
    and the loop may stop: those wait for their own step.
    """
    global_step = int(optimizer.iterations.numpy())
    if config.max_steps is not None and global_step >= config.max_steps:
        logging.info("%s: Global step %d already reached max_steps.", task_name(), global_step)
        return global_step
    logging.info("%s: Entering training loop.", task_name())
    first_step = global_step
    iterator = iter(dataset)
    metrics = TrainingMetrics(config, strategy, model, optimizer, writer)
    with StopOnSignal() as stop:
        while True:
            batch = next(iterator, None)
            if batch is None and global_step == first_step:
                raise UserError(
                    f"The files of {{train_data_pattern}}='{config.train_data_pattern}' hold "
                    "no videos to train on.",
                    "train_data_pattern",
                )
            if batch is None:
                metrics.flush()
                logging.info("%s: Done training -- epoch limit reached.", task_name())
                break
            global_step += 1
            metrics.dispatched(global_step, batch, train_step(batch))
            stopping = stop.signal_number is not None or (
                config.max_steps is not None and global_step >= config.max_steps
            )
            if global_step % METRICS_EVERY_STEPS and not stopping and not checkpointer.time_due():
                continue
            metrics.flush()
            if checkpointer.due(global_step, config.export_model_steps):
                checkpointer.save(global_step)
            if stop.signal_number is not None:
                logging.info("%s: Received signal %d.", task_name(), stop.signal_number)
            if stopping:
                break
    checkpointer.save(global_step)
    logging.info("%s: Exited training loop.", task_name())
    logging.info(
        "%s: Final global step %d, weights checksum %.9g",
        task_name(),
        global_step,
        sum(float(tf.reduce_sum(tf.abs(v))) for v in model.trainable_variables),
    )
    return global_step


class TrainingMetrics:
    """Logs each step as the original did; every 10 steps (chief only) Hit@1, PERR, GAP.

    A step is logged once the next one is dispatched (or on flush), so the device can run
    a step ahead of the host reading the loss back.
    """

    def __init__(self, config, strategy, model, optimizer, writer):
        self.config = config
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.writer = writer
        self.last_histograms = 0.0
        self.last_dispatch = time.time()
        self.unlogged = None  # log()'s arguments for the step dispatched last.

    def dispatched(self, global_step: int, batch, outputs) -> None:
        """Logs the previous step, and keeps this one's outputs to log later.

        A step's time runs from the previous step's dispatch to its own: the step itself
        where dispatching waits for the device (CPU), the device's pace where the host
        runs ahead. The first step's time includes compilation, as in the original.
        """
        now = time.time()
        seconds, self.last_dispatch = now - self.last_dispatch, now
        self.flush()
        self.unlogged = (global_step, batch, outputs, seconds)

    def flush(self) -> None:
        """Logs the step dispatched last, waiting for its results, if not yet logged."""
        if self.unlogged:
            unlogged, self.unlogged = self.unlogged, None
            self.log(*unlogged)

    def log(self, global_step: int, batch, outputs, seconds: float) -> None:
        """Logs one step; stops training (UserError) on a NaN or infinite loss."""
        label_loss = float(outputs["label_loss"])
        reg_loss = float(outputs["reg_loss"])
        loss = label_loss + self.config.regularization_penalty * reg_loss
        if not np.isfinite(loss):
            raise UserError(
                f"The loss became {loss} at step {global_step}; stopping "
                "without saving this state. Try a smaller --base_learning_rate or "
                "--clip_gradient_norm."
            )
        num_examples = sum(
            part.shape[0] for part in self.strategy.experimental_local_results(batch["labels"])
        )
        examples_per_second = num_examples / seconds
        # Faithful: the logged loss is the label loss, as the original's "loss" collection.
        if self.writer is None or global_step % METRICS_EVERY_STEPS != 0:
            logging.info(
                "training step %d | Loss: %.2f Examples/sec: %.2f",
                global_step,
                label_loss,
                examples_per_second,
            )
            return
        predictions = local_values(self.strategy, outputs["predictions"])
        # The batch's own labels: the step does not copy them out (16 MB at batch 1024).
        labels = local_values(self.strategy, batch["labels"])
        if "label_weights" in batch:  # Segment mode: only the rated classes count.
            predictions = predictions * local_values(self.strategy, batch["label_weights"])
        hit_at_one = eval_util.calculate_hit_at_one(predictions, labels)
        perr = eval_util.calculate_precision_at_equal_recall_rate(predictions, labels)
        gap = eval_util.calculate_gap(predictions, labels)
        logging.info(
            "training step %d | Loss: %.2f Examples/sec: %.2f | Hit@1: %.2f PERR: %.2f GAP: %.2f",
            global_step,
            label_loss,
            examples_per_second,
            hit_at_one,
            perr,
            gap,
        )
        scalars = {
            "model/Training_Hit@1": hit_at_one,
            "model/Training_Perr": perr,
            "model/Training_GAP": gap,
            "global_step/Examples/Second": examples_per_second,
            "learning_rate": self.optimizer.learning_rate,
            "label_loss": label_loss,
        }
        if self.config.regularization_penalty != 0:
            scalars["reg_loss"] = reg_loss
        summaries.write_scalars(self.writer, global_step, scalars)
        if time.time() - self.last_histograms >= HISTOGRAMS_EVERY_SECONDS:
            raw_input = local_values(self.strategy, batch["video_matrix"])
            if raw_input.dtype == np.uint8:
                num_frames = local_values(self.strategy, batch["num_frames"])
                raw_input = features.dequantize_frames([raw_input], [num_frames])
            summaries.write_histograms(self.writer, global_step, self.model, raw_input)
            self.last_histograms = time.time()


def print_model_summary(config: TrainConfig) -> None:
    """Prints the model's trainable weights and their count, built for the features."""
    reader = readers.create_reader(
        config.frame_features,
        config.feature_names,
        config.feature_sizes,
        segment_labels=config.segment_labels,
    )
    with precision_policy(config.mixed_precision):
        model = models.create_built_model(config.model, reader, config.model_hyperparameters)
    total = 0
    for weight in model.trainable_weights:
        count = math.prod(weight.shape)
        total += count
        print(f"{weight.path:<64} {str(tuple(weight.shape)):>18} {count:>14,}")
    print(f"Trainable parameters: {total:,} ({total * 4 / 2**20:,.1f} MiB in float32)")


def main(config: TrainConfig) -> None:
    """Trains with the command-line flags, model hyperparameter flags included."""
    config = dataclasses.replace(config, model_hyperparameters=models.hyperparameter_flags())
    if config.print_model_summary:
        print_model_summary(config)
    else:
        train(config)


if __name__ == "__main__":
    cli.run(main, TrainConfig, *models.hyperparameter_tables())
