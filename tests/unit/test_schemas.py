import json

import pytest

from streams.processing.schemas import Click, Limits, Purchase, Refund, Rejection, Watermark, decode

NOW = 1_700_000_000_000
OK = {"event_id": "e", "customer_id": "c", "type": "purchase", "order_id": "o",
      "amount": "12.50", "ts": "2023-11-01T10:00:00+02:00"}  # fmt: skip


def dec(obj, **limits):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return decode(raw, NOW, Limits(**limits))


def test_valid_events_of_each_type():
    p = dec({**OK, "unknown": 1, "items": [{"category": "x", "quantity": 2}]})
    assert isinstance(p, Purchase) and str(p.amount) == "12.50"
    assert p.ts == 1698825600000 and p.category_quantities() == {"x": 2}
    c = dec({"event_id": "e", "customer_id": "c", "type": "click", "action": "view", "ts": 5})
    assert isinstance(c, Click) and c.ts == 5
    r = dec({"event_id": "e", "customer_id": "c", "type": "refund", "order_id": "o",
             "amount": 1, "ts": "2023-11-01"})  # fmt: skip
    assert isinstance(r, Refund)
    assert isinstance(dec({"type": "watermark", "ts": "2023-11-01T00:00:00Z"}), Watermark)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b'"a string"', "invalid_schema"),
        ({**OK, "amount": "-1"}, "invalid_schema"),
        ({**OK, "amount": "Infinity"}, "invalid_schema"),
        ({**OK, "amount": True}, "invalid_schema"),
        ({**OK, "ts": True}, "invalid_schema"),
        ({**OK, "ts": -5}, "invalid_schema"),
        ({**OK, "customer_id": ""}, "invalid_schema"),
        ({**OK, "customer_id": None}, "invalid_schema"),
        ({k: v for k, v in OK.items() if k != "order_id"}, "invalid_schema"),
        ({**OK, "type": "click", "action": "jump"}, "invalid_schema"),
        ({**OK, "items": [{"quantity": 0}]}, "invalid_schema"),
        ({**OK, "amount": "2000000"}, "absurd_amount"),
        ({**OK, "ts": NOW + 2 * 86_400_000}, "ts_in_future"),
        ({**OK, "pad": "x" * 70_000}, "oversize"),
        # poison records that used to raise inside the batch
        (
            b'{"event_id":"e","customer_id":"c","type":"purchase","order_id":"o","amount":"1",'
            b'"ts":1e300}',
            "invalid_schema",
        ),
        ({**OK, "ts": 1e15}, "invalid_schema"),  # year 33658
        (
            b'{"event_id":"e","customer_id":"c","type":"purchase","order_id":"o","amount":"1",'
            b'"ts":Infinity}',
            "invalid_schema",
        ),
        (
            b'{"event_id":"e","customer_id":"c","type":"purchase","order_id":"o","amount":"1",'
            b'"ts":NaN}',
            "invalid_schema",
        ),
        (b"[" * 30_000 + b"]" * 30_000, "invalid_json"),  # ~60 KB deeply nested
        ({**OK, "ts": "9999-12-31T23:59:59-05:00"}, "invalid_schema"),  # past year 9999 in UTC
        ({**OK, "ts": "0001-01-01T00:00:00"}, "invalid_schema"),
        ({**OK, "customer_id": "\ud800"}, "invalid_schema"),  # a lone surrogate
        ({**OK, "customer_id": "a\u0000b"}, "invalid_schema"),
        ({**OK, "type": "refund", "amount": "0"}, "invalid_schema"),  # a refund of nothing
        ({**OK, "amount": "1e999999"}, "absurd_amount"),
        ({**OK, "customer_id": "x" * 300}, "invalid_schema"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(payload, reason):
    result = dec(payload)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.detail


def test_a_free_order_and_unicode_ids_are_valid():
    free = dec({**OK, "amount": "0", "customer_id": "客户-😀-Ünïcødé", "order_id": "ø"})
    assert isinstance(free, Purchase) and free.amount == 0
    assert free.customer_id == "客户-😀-Ünïcødé"


def test_no_payload_makes_decode_raise():
    """Whatever bytes come, decode answers (an event or a rejection); it never raises."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=2000, deadline=None)
    @given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
    def check(raw):
        assert isinstance(decode(raw, NOW, Limits()), Purchase | Click | Refund | Watermark
                          | Rejection)  # fmt: skip

    check()


def test_schema_error_names_the_field():
    result = dec({**OK, "amount": "-1"})
    assert "amount" in result.detail


def test_limits_are_settings():
    assert isinstance(dec({**OK, "amount": "20"}, max_amount=10), Rejection)
    assert isinstance(dec({**OK, "amount": "20"}, max_amount=100), Purchase)
