r"""The predictions CSV of inference.py and ensemble_predictions.py: header, rows, quoting.

`VideoId,LabelConfidencePairs`, then one `<id>,<class> <score> ...` row per video, each
ending in `\n`. An id holding a comma, a quote or a line break (`\n`, `\r`) is quoted
as RFC 4180 quotes it, so the csv module and pandas (`dtype=str, keep_default_na=False`)
read every id back exactly; the csv module's writer alone would leave a `\r` unquoted.
"""

HEADER = "VideoId,LabelConfidencePairs"
# The ids written as they are (an RE2 pattern, for tf.strings.regex_full_match too).
PLAIN_ID = '[^,"\r\n]*'
NEEDS_QUOTES = (",", '"', "\r", "\n")


def row(video_id: str, pairs: str) -> str:
    """Returns one row of the CSV, line break included."""
    return f"{quoted(video_id)},{pairs}\n"


def quoted(field: str) -> str:
    """Returns the field, quoted if it holds a comma, a quote or a line break."""
    if any(character in field for character in NEEDS_QUOTES):
        return '"' + field.replace('"', '""') + '"'
    return field
