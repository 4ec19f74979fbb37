"""Ground module: log line formats for every process (text or JSON lines, RECSYS_LOG_FORMAT)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

FORMAT_ENV = "RECSYS_LOG_FORMAT"  # "text" (default) or "json": one JSON object per line
LEVEL_ENV = "RECSYS_LOG_LEVEL"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ISO-8601, ms), level, logger, message, pid, and any
    extra attributes the record carries (e.g. request_id); exceptions as a string."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = {
            "ts": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        line.update((k, v) for k, v in vars(record).items() if k not in _STANDARD and v is not None)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def log_format() -> str:
    """'text' or 'json' from RECSYS_LOG_FORMAT; anything else is an error naming the variable."""
    value = os.environ.get(FORMAT_ENV, "text").strip().lower() or "text"
    if value not in ("text", "json"):
        raise ValueError(f"${FORMAT_ENV} must be 'text' or 'json', found {value!r}")
    return value


def formatter() -> logging.Formatter:
    return JsonFormatter() if log_format() == "json" else logging.Formatter(TEXT_FORMAT)


def quiet_progress_bars_without_a_terminal() -> bool:
    """Progress bars (ours and the libraries' tqdm, e.g. transformers' "Loading weights") only
    when stderr is a terminal: cron and container logs get no carriage-return noise. Call before
    those libraries are imported; returns whether bars stay on."""
    if sys.stderr.isatty():
        return True
    quiet_progress_bars()
    return False


def quiet_progress_bars() -> None:
    """No tqdm bars in this process and its children (servers: their output is a log)."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def configure(level: int | str = logging.INFO) -> None:
    """Command-line processes: one stderr handler on the root logger in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter())
    logging.basicConfig(level=os.environ.get(LEVEL_ENV, level), handlers=[handler], force=True)
