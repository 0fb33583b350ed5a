"""Structured logs: JSON lines with the UIDs as fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from dicom_node.core.logs import configure_logging, uids
from dicom_node.core.settings import SettingsError, load_settings


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("INFO", "json")
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    logging.captureWarnings(False)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_level_logger_message_and_uids(captured: io.StringIO) -> None:
    log = logging.getLogger("dicom_node.test")
    log.info(
        "Series %s complete with %d instance(s)",
        "1.2.3.4",
        60,
        extra=uids("1.2.3", "1.2.3.4", None),
    )
    log.debug("not shown at INFO")
    (line,) = _lines(captured)
    assert line["level"] == "INFO"
    assert line["logger"] == "dicom_node.test"
    assert line["message"] == "Series 1.2.3.4 complete with 60 instance(s)"
    assert line["study_instance_uid"] == "1.2.3"
    assert line["series_instance_uid"] == "1.2.3.4"
    assert "sop_instance_uid" not in line
    assert str(line["timestamp"]).endswith("+00:00")


def test_exceptions_stay_on_one_line(captured: io.StringIO) -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logging.getLogger("dicom_node.test").exception("Failed")
    text = captured.getvalue()
    assert text.count("\n") == 1
    (line,) = _lines(captured)
    assert "ValueError: bad" in str(line["exception"])


def test_log_format_setting() -> None:
    assert load_settings(environ={}).log_format == "text"
    assert load_settings(environ={"DICOM_NODE_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(SettingsError, match="log_format"):
        load_settings(environ={"DICOM_NODE_LOG_FORMAT": "xml"})
