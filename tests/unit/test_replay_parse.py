import pytest

from producers.replay import ReplaySpec, end_watermark, events_from_text


def test_csv_with_header_sorted_by_time_and_ids_stable():
    text = "id,when,amt\nb,2024-01-03,5.00\na,2024-01-01,1.50\na,2024-01-02,2\n"
    spec = ReplaySpec("id", "when", "amt")
    events, problems = events_from_text(text, spec)
    assert not problems
    assert [e["customer_id"] for e in events] == ["a", "a", "b"]
    assert events[0]["ts"] == "2024-01-01T00:00:00+00:00"
    again, _ = events_from_text(text, spec)
    assert [e["event_id"] for e in events] == [e["event_id"] for e in again]
    assert all(e["order_id"] == e["event_id"] for e in events)


def test_identical_lines_stay_two_purchases():
    text = "x 19970101 1 9.99\nx 19970101 1 9.99\n"
    spec = ReplaySpec("0", "1", "3", time_format="%Y%m%d", sep="whitespace", header=False)
    events, _ = events_from_text(text, spec)
    assert len({e["order_id"] for e in events}) == 2


def test_unreadable_rows_are_reported_and_still_sent():
    text = "x 19970101 1 9.99\ny notadate 1 2\nshort\n"
    spec = ReplaySpec("0", "1", "3", time_format="%Y%m%d", sep="whitespace", header=False)
    events, problems = events_from_text(text, spec)
    assert len(events) == 3 and len(problems) == 2
    assert "ts" not in events[-1]  # the worker will put it on the DLQ with a reason


def test_unknown_column_is_a_clear_error():
    with pytest.raises(ValueError, match="not in the header"):
        events_from_text("a,b\n1,2\n", ReplaySpec("a", "b", "amount"))


def test_end_watermark_defaults_to_last_row():
    events, _ = events_from_text(
        "c,t,a\nx,2024-01-05,1\nx,2024-01-02,1\n", ReplaySpec("c", "t", "a")
    )
    assert end_watermark(events, None) == "2024-01-05T00:00:00+00:00"
    assert end_watermark(events, "2024-02-01") == "2024-02-01T00:00:00+00:00"
