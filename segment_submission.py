"""The Kaggle 2019 segment submission: the class whitelist, per-class top lists, the file.

The file ranks, for each class of the whitelist (segment_label_ids.csv: the 1,000 classes
rated at segment level), the segments most likely to show it:

  Class,Segments
  3,t000123:35 t000007:0 t000123:40 ...

one line per class that has a segment, by class id; segment ids `<video_id>:<start
frame>`, by descending score, at most segment_max_pred per class.
"""

import urllib.error
import urllib.request

import numpy as np
import tensorflow as tf

import atomic_write
from errors import UserError

HEADER = "Class,Segments"
# The flag that names the whitelist, for the error messages.
SETTING = ("segment_label_ids_file",)


def whitelist(path: str, num_classes: int) -> np.ndarray:
    """Returns the sorted class ids listed in a segment_label_ids file.

    Lines that are not integers (the header `Index`) are skipped, as the original did.

    Args:
      path: a local or tf.io.gfile path, or an http(s) URL.
      num_classes: the model's vocabulary size; every id must be below it.

    Raises:
      UserError: the file cannot be read, lists no id, or an id outside the vocabulary.
    """
    lines = [line.strip() for line in whitelist_text(path).splitlines()]
    ids = np.unique([int(line) for line in lines if line.lstrip("-").isdigit()])
    if ids.size == 0:
        raise UserError(f"{{segment_label_ids_file}}={path!r} lists no class id.", *SETTING)
    outside = ids[(ids < 0) | (ids >= num_classes)]
    if outside.size:
        raise UserError(
            f"{{segment_label_ids_file}}={path!r}: class id {outside[0]} is outside the "
            f"model's [0, {num_classes}).",
            *SETTING,
        )
    return ids.astype(np.int32)


def whitelist_text(path: str) -> str:
    """Returns the text of a whitelist file or URL."""
    try:
        if path.startswith(("http://", "https://")):
            with urllib.request.urlopen(path, timeout=60) as response:
                return response.read().decode("utf-8")
        with tf.io.gfile.GFile(path) as file:
            return file.read()
    except (OSError, urllib.error.URLError, tf.errors.OpError) as error:
        reason = getattr(error, "reason", None) or getattr(error, "message", None) or error
        raise UserError(
            f"{{segment_label_ids_file}}={path!r} cannot be read: {reason}", *SETTING
        ) from None


class TopSegments:
    """Keeps, per class, the max_per_class best-scored segments seen so far.

    Memory is bounded by classes × max_per_class entries however many segments come in:
    candidates are buffered and, whenever the buffer outgrows that bound, cut back to each
    class's best. Ties keep the segment seen first.
    """

    def __init__(self, max_per_class: int, min_buffer: int = 1 << 20):
        """Creates empty lists.

        Args:
          max_per_class: segments kept per class.
          min_buffer: candidates buffered at least before cutting back (a cut sorts
            everything kept, so it should not run for every batch).
        """
        self.max_per_class = max_per_class
        self.min_buffer = min_buffer
        self.num_seen = 0  # Segments added so far: each one's place in the input order.
        self.kept = self.empty()
        self.pending = []
        self.num_pending = 0
        self.limit = 0  # The bound, once the number of classes seen is known.

    @staticmethod
    def empty() -> dict[str, np.ndarray]:
        """Returns a candidate table with no rows."""
        return {
            "class": np.zeros([0], np.int32),
            "score": np.zeros([0], np.float32),
            "order": np.zeros([0], np.int64),
            "segment_id": np.zeros([0], "S1"),
        }

    def add(self, segment_ids: np.ndarray, classes: np.ndarray, scores: np.ndarray) -> None:
        """Adds one batch of segments: their ids [S] and top classes and scores [S, k]."""
        num_segments, k = classes.shape
        order = self.num_seen + np.arange(num_segments, dtype=np.int64)
        self.num_seen += num_segments
        self.pending.append(
            {
                "class": classes.reshape(-1).astype(np.int32),
                "score": scores.reshape(-1).astype(np.float32),
                "order": np.repeat(order, k),
                "segment_id": np.repeat(np.asarray(segment_ids, dtype=np.bytes_), k),
            }
        )
        self.num_pending += num_segments * k
        if self.num_pending > max(self.limit, self.min_buffer):
            self.prune()

    def size(self) -> int:
        """Returns the number of candidates held (kept and buffered)."""
        return len(self.kept["class"]) + self.num_pending

    def prune(self) -> None:
        """Cuts the candidates back to each class's best max_per_class."""
        table = {
            key: np.concatenate([self.kept[key]] + [batch[key] for batch in self.pending])
            for key in self.kept
        }
        # By class, then descending score, then input order.
        ranked = np.lexsort((table["order"], -table["score"], table["class"]))
        classes = table["class"][ranked]
        first_of_class = np.searchsorted(classes, classes, side="left")
        rank_in_class = np.arange(len(classes)) - first_of_class
        keep = ranked[rank_in_class < self.max_per_class]
        self.kept = {key: values[keep] for key, values in table.items()}
        self.pending, self.num_pending = [], 0
        self.limit = len(np.unique(self.kept["class"])) * self.max_per_class

    def lines(self):
        """Yields the submission's lines after the header: one per class, by class id."""
        self.prune()
        classes = self.kept["class"]
        boundaries = np.flatnonzero(np.diff(classes)) + 1
        for rows in np.split(np.arange(len(classes)), boundaries):
            if rows.size:
                ids = b" ".join(self.kept["segment_id"][rows].tolist()).decode("utf-8")
                yield f"{classes[rows[0]]},{ids}\n"


def check_segment_ids(segment_ids: np.ndarray) -> None:
    """Raises a UserError unless every id can stand in the space-separated list of a row.

    Raises:
      UserError: naming the first id that holds a space, a comma, a quote or a line
        break, or is not UTF-8 text.
    """
    joined = b"\n".join(segment_ids.tolist())
    try:
        joined.decode("utf-8")
        clean = not any(character in joined for character in (b" ", b",", b'"', b"\r"))
    except UnicodeDecodeError:
        clean = False
    if clean and joined.count(b"\n") == len(segment_ids) - 1:
        return
    for segment_id in segment_ids.tolist():
        if any(character in segment_id for character in b' ,"\r\n'):
            problem = "holds a space, comma, quote or line break"
        else:
            try:
                segment_id.decode("utf-8")
                continue
            except UnicodeDecodeError:
                problem = "is not UTF-8 text"
        raise UserError(
            f"The segment id {segment_id!r} {problem}, which the submission's "
            "space-separated lists cannot hold; nothing was written."
        )


def write(path: str, top_segments: TopSegments) -> None:
    """Writes the submission file under a temporary name, renamed when complete."""
    with (
        atomic_write.replaced_atomically(path) as temporary,
        tf.io.gfile.GFile(temporary, "w") as file,
    ):
        file.write(HEADER + "\n")
        for line in top_segments.lines():
            file.write(line)
