"""Replay a purchase file (CSV or whitespace-separated) as purchase events, in
time order, ending with a watermark.

Event and order ids are derived from each line's number and text, so replaying
the same file twice sends the same ids and the worker counts nothing twice.
Rows that cannot be read are still sent, as they are, so that they land on the
DLQ with a reason instead of vanishing.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from streams.processing.schemas import iso, to_epoch_ms


@dataclass(frozen=True)
class ReplaySpec:
    customer_col: str
    time_col: str
    amount_col: str
    time_format: str | None = None
    sep: str = ","
    header: bool = True


def _split_lines(text: str, spec: ReplaySpec) -> list[tuple[int, str, list[str]]]:
    """(1-based line number, raw line, fields) for every non-blank line."""
    lines = text.splitlines()
    out = []
    if spec.sep == "whitespace":
        for no, line in enumerate(lines, 1):
            if line.strip():
                out.append((no, line, line.split()))
    else:
        delimiter = "\t" if spec.sep in ("tab", "\\t") else spec.sep
        for no, line in enumerate(lines, 1):
            if line.strip():
                out.append((no, line, next(csv.reader([line], delimiter=delimiter))))
    return out


def parse_time(value: str, time_format: str | None) -> int:
    """Epoch ms of a file's time value; a time without an offset is UTC.

    >>> parse_time("19970101", "%Y%m%d")
    852076800000
    >>> parse_time("1997-01-01T00:00:00Z", None), parse_time("852076800000", None)
    (852076800000, 852076800000)
    """
    value = value.strip()
    if time_format:
        parsed = datetime.strptime(value, time_format)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return round(parsed.timestamp() * 1000)
    if value.isdigit():
        return int(value)
    return to_epoch_ms(value)


def _column(spec_value: str, header: list[str] | None) -> int:
    if header is None:
        try:
            return int(spec_value)
        except ValueError:
            raise ValueError(
                f"with --no-header, columns are 0-based indexes: {spec_value!r}"
            ) from None
    if spec_value not in header:
        raise ValueError(f"column {spec_value!r} is not in the header {header}")
    return header.index(spec_value)


def line_id(line_no: int, line: str) -> str:
    return hashlib.sha256(f"{line_no}\n{line}".encode()).hexdigest()[:24]


def events_from_text(text: str, spec: ReplaySpec) -> tuple[list[dict], list[str]]:
    """Purchase events in time order (ties in file order) and a list of row problems."""
    rows = _split_lines(text, spec)
    header = None
    if spec.header and rows:
        header = [h.strip() for h in rows[0][2]]
        rows = rows[1:]
    cols = [_column(c, header) for c in (spec.customer_col, spec.time_col, spec.amount_col)]
    problems = []
    keyed = []
    for no, line, fields in rows:
        ident = line_id(no, line)
        event = {"event_id": f"rp-{ident}", "order_id": f"rp-{ident}", "type": "purchase"}
        ts = None
        try:
            customer, when, amount = (fields[c].strip() for c in cols)
            event.update(customer_id=customer, amount=amount)
            ts = parse_time(when, spec.time_format)
            event["ts"] = iso(ts)
        except (IndexError, ValueError, OverflowError) as exc:
            problems.append(f"line {no}: {exc}")
            event.setdefault("raw_line", line)
        keyed.append((ts is None, ts or 0, no, event))
    keyed.sort(key=lambda k: k[:3])
    return [event for *_, event in keyed], problems


def read_file(path: Path, spec: ReplaySpec) -> tuple[list[dict], list[str]]:
    return events_from_text(Path(path).read_text(encoding="utf-8-sig"), spec)


def end_watermark(events: list[dict], end_time: str | None) -> str | None:
    """The final watermark: --end-time, else the last event's time."""
    if end_time:
        return iso(to_epoch_ms(end_time))
    times = [to_epoch_ms(e["ts"]) for e in events if "ts" in e]
    return iso(max(times)) if times else None
