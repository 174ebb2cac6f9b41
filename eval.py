r"""Evaluates the checkpoints of a training directory: Hit@1, PERR, mAP, GAP.

  python eval.py --eval_data_pattern='/tmp/yt8m_sample/video/validate*.tfrecord' \
      --train_dir=/tmp/yt8m_model --run_once

The model, features and loss come from <train_dir>/model_flags.json, written by train.py.
Without --run_once, eval.py watches train_dir and evaluates each new checkpoint once.
For every checkpoint it evaluates it also writes <train_dir>/inference_model, the
SavedModel that inference.py uses (unless it holds that checkpoint already), and
summaries to <train_dir>/eval. A checkpoint holding weight averages (train.py
--ema_decay) is evaluated and exported with the averages in place of the trainable
weights.

With --segment_labels it evaluates the rated segments of the 2019 segment-rated files
(each prediction and label masked to the rated classes), writes the summaries under
SegEval and the segment model <train_dir>/segment_inference_model instead.
"""

import quiet_tensorflow  # noqa: F401 (first: hides TensorFlow's start-up noise)

# isort: split
import concurrent.futures
import dataclasses
import os
import time

import tensorflow as tf
from absl import flags, logging

import atomic_write
import checkpoint_files
import cli
import errors
import eval_util
import export_model
import losses
import models
import readers
import summaries
import trained_model
from settings import Settings, setting


@dataclasses.dataclass(frozen=True)
class EvalConfig(Settings):
    """The evaluation settings, each a flag of eval.py."""

    train_dir: str = setting("/tmp/yt8m_model/")
    eval_data_pattern: str = setting("", "File glob of the data to evaluate on.")
    batch_size: int = setting(1024)
    num_readers: int = setting(8)
    top_k: int = setting(20)
    run_once: bool = setting(False, "Evaluate the latest checkpoint once and exit.")
    segment_labels: bool = setting(False)


# Seconds between looks for a new checkpoint (the original polled without pausing).
POLL_SECONDS = 1


class Evaluator:
    """Evaluates checkpoints of one training directory on one data set."""

    def __init__(
        self,
        train_dir: str,
        eval_data_pattern: str,
        batch_size: int,
        top_k: int,
        num_readers: int,
        segment_labels: bool = False,
    ):
        self.model, self.reader, model_flags = trained_model.model_from_flags(
            train_dir, segment_labels
        )
        self.segment_labels = segment_labels
        self.summary_scope = "SegEval" if segment_labels else "Eval"
        self.train_dir = train_dir
        self.eval_data_pattern = eval_data_pattern
        self.batch_size = batch_size
        self.num_readers = num_readers
        self.label_loss_fn = errors.chosen(model_flags["label_loss"], losses.LOSSES, "label_loss")()
        self.metrics = eval_util.EvaluationMetrics(self.reader.num_classes, top_k, None)
        summary_dir = os.path.join(train_dir, "eval")
        with atomic_write.write_failures_explained(summary_dir, "nothing was evaluated"):
            self.writer = tf.summary.create_file_writer(summary_dir)
        self.checkpoint = tf.train.Checkpoint(model=self.model)
        self.predict = tf.function(self.batch_predictions_and_loss)
        self.padded_forward = tf.function(self.forward, jit_compile=True)
        self.last_global_step = None

    def forward(self, video_matrix, num_frames) -> dict:
        """Returns the model's outputs in inference mode; XLA-compiled."""
        return models.forward(self.model, video_matrix, num_frames, training=False)

    def batch_predictions_and_loss(self, video_matrix, num_frames, labels, label_weights=None):
        """Returns (predictions, labels, label loss) of a batch, the model in inference mode.

        A smaller (last) batch runs through the model padded to batch_size rows with copies
        of its last row, its outputs cut back, so XLA compiles the model once per process.
        With label_weights (segment mode) predictions and labels are masked to the rated
        classes and the loss covers those only (the original left the loss unweighted).
        """
        rows = tf.shape(num_frames)[0]
        padding = tf.maximum(self.batch_size - rows, 0)
        padded = [
            tf.ensure_shape(
                tf.concat([tensor, tf.repeat(tensor[-1:], padding, axis=0)], axis=0),
                [self.batch_size, *tensor.shape[1:]],
            )
            for tensor in (video_matrix, num_frames)
        ]
        outputs = {
            name: value[:rows] if value.shape.rank else value
            for name, value in self.padded_forward(*padded).items()
        }
        loss = models.label_loss(outputs, labels, self.label_loss_fn, label_weights)
        predictions = outputs["predictions"]
        if label_weights is not None:
            predictions, labels = predictions * label_weights, labels * label_weights
        return predictions, labels, loss

    def evaluate_latest(self) -> int:
        """Evaluates the latest checkpoint unless it was evaluated already.

        Returns:
          Its global step, or -1 if train_dir holds no checkpoint.
        """
        checkpoint_path = checkpoint_files.latest(self.train_dir)
        if not checkpoint_path:
            logging.info("No checkpoint file found.")
            return -1
        global_step = int(checkpoint_path.rsplit("-", 1)[1])
        if global_step == self.last_global_step:
            logging.log_every_n_seconds(
                logging.INFO,
                "skip this checkpoint global_step_val=%s (same as the previous one).",
                600,
                global_step,
            )
            return global_step
        logging.info("Loading checkpoint for eval: %s", checkpoint_path)
        trained_model.restore_weights(self.checkpoint, checkpoint_path)
        model_dir = trained_model.inference_model_path(self.train_dir, self.segment_labels)
        if export_model.exported_from(model_dir) != export_model.checkpoint_identity(
            checkpoint_path
        ):
            export_model.export(self.model, self.reader, model_dir, checkpoint_path)
        self.evaluate(global_step)
        self.last_global_step = global_step
        return global_step

    def evaluate(self, global_step: int) -> dict:
        """Runs the restored model over the whole eval set; logs and writes the metrics."""
        logging.info("enter eval_once loop global_step_val = %s. ", global_step)
        # Faithful: graph seed 0 for every evaluation (DBoF samples frames at eval too), so
        # a checkpoint's figures do not depend on which were evaluated before it.
        tf.random.set_seed(0)
        self.metrics.clear()
        dataset = self.reader.get_dataset(
            self.eval_data_pattern, self.batch_size, num_readers=self.num_readers
        )
        batch_log = BatchLog(self.writer, global_step, self.summary_scope)
        # The metrics of one batch (NumPy) run in a second thread while the model runs the
        # next batch (TensorFlow); both release the GIL.
        with (
            self.reader.errors_explained(self.eval_data_pattern),
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as metrics_thread,
        ):
            pending = None
            start = time.perf_counter()
            for batch in dataset:
                outputs = [t.numpy() for t in self.predict(**readers.numeric_features(batch))]
                # The batch's own time: reading it and running the model, as the original's.
                seconds = time.perf_counter() - start
                if pending is not None:
                    batch_log.add(pending.result())
                pending = metrics_thread.submit(self.accumulated_batch, *outputs, seconds)
                start = time.perf_counter()  # Not counting the wait for the previous metrics.
            if pending is not None:
                batch_log.add(pending.result())
        if not batch_log.examples_processed:
            raise errors.UserError(
                f"The files of {{eval_data_pattern}}='{self.eval_data_pattern}' hold no "
                f"{'rated segments' if self.segment_labels else 'videos'} to evaluate.",
                "eval_data_pattern",
            )
        logging.info("Done with batched inference. Now calculating global performance metrics.")
        epoch_info = self.metrics.get()
        epoch_info["epoch_id"] = global_step
        logging.info(
            summaries.add_epoch_summary(self.writer, global_step, epoch_info, self.summary_scope)
        )
        self.metrics.clear()
        logging.info("Total: examples_processed: %d", batch_log.examples_processed)
        return epoch_info

    def accumulated_batch(self, predictions, labels, loss, seconds: float) -> dict:
        """Adds one batch to the metrics; returns its batch metrics and examples/s."""
        info = self.metrics.accumulate(predictions, labels, loss)
        info["examples_per_second"] = predictions.shape[0] / max(seconds, 1e-9)
        info["num_examples"] = predictions.shape[0]
        return info


class BatchLog:
    """Logs and writes each batch's metrics with the original's line and tags."""

    def __init__(self, writer, global_step: int, summary_scope: str):
        self.writer = writer
        self.global_step = global_step
        self.summary_scope = summary_scope
        self.examples_processed = 0

    def add(self, info: dict) -> None:
        """Logs one batch's metrics and its examples per second."""
        self.examples_processed += info.pop("num_examples")
        text = summaries.add_global_step_summary(
            self.writer, self.global_step, info, self.summary_scope
        )
        logging.info("examples_processed: %d | %s", self.examples_processed, text)


def evaluate(config: EvalConfig) -> None:
    """Evaluates the latest checkpoint, then (unless run_once) every new one as it appears."""
    cli.require_files(
        config.eval_data_pattern,
        unspecified="'eval_data_pattern' was not specified. Nothing to evaluate.",
        no_match="Unable to find the evaluation files. "
        f"eval_data_pattern='{config.eval_data_pattern}'.",
    )
    evaluator = Evaluator(
        config.train_dir,
        config.eval_data_pattern,
        config.batch_size,
        config.top_k,
        config.num_readers,
        config.segment_labels,
    )
    evaluator.evaluate_latest()
    while not config.run_once:
        time.sleep(POLL_SECONDS)
        evaluator.evaluate_latest()


def warn_about_ignored_model_flags(train_dir: str) -> None:
    """Warns about hyperparameter flags given on the command line that differ from training.

    The original needed them repeated for eval.py; here model_flags.json holds them.
    """
    path = trained_model.model_flags_path(train_dir)
    recorded = trained_model.load_json(path) if tf.io.gfile.exists(path) else {}
    for name, value in models.hyperparameter_flags().items():
        if flags.FLAGS[name].present and name in recorded and recorded[name] != value:
            logging.warning(
                "--%s=%s is ignored: the model was trained with %s (%s).",
                name,
                value,
                recorded[name],
                path,
            )


def main(config: EvalConfig) -> None:
    """Evaluates with the command-line flags."""
    warn_about_ignored_model_flags(config.train_dir)
    evaluate(config)


if __name__ == "__main__":
    cli.run(main, EvalConfig, *models.hyperparameter_tables())
