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


# --- S9 bounds (issue #26, item 11) -------------------------------------------------------
# The oracles below are written out: Unicode categories come from unicodedata, which the
# implementation also uses, but the expected forms are spelled in code points.

FORMAT_AND_CONTROL = ["\u202e", "\u200b", "\u200d", "\ufeff", "\u00ad", "\x7f", "\x1b", "\u2028"]


@pytest.mark.parametrize("char", FORMAT_AND_CONTROL)
@pytest.mark.parametrize("field", ["customer_id", "order_id", "event_id"])
def test_format_and_control_characters_in_ids_go_to_the_dlq(char, field):
    result = dec({**OK, field: f"alice{char}bob"})
    assert isinstance(result, Rejection) and result.reason == "invalid_schema"
    assert field in result.detail and f"U+{ord(char):04X}" in result.detail


def test_a_category_with_a_format_character_goes_to_the_dlq():
    result = dec({**OK, "items": [{"category": "toys\u200b", "quantity": 1}]})
    assert isinstance(result, Rejection) and "U+200B" in result.detail


def test_nfd_and_nfc_spellings_are_one_id():
    nfc, nfd = "Jos\u00e9-M\u00fcller", "Jose\u0301-Mu\u0308ller"  # é and ü, two ways
    a = dec({**OK, "customer_id": nfc, "items": [{"category": "caf\u00e9"}]})
    b = dec({**OK, "customer_id": nfd, "items": [{"category": "cafe\u0301"}]})
    assert a.customer_id == b.customer_id == nfc
    assert a.category_quantities() == b.category_quantities() == {"caf\u00e9": 1}


def test_a_customer_id_that_names_a_stored_pseudonym_is_reserved():
    result = dec({**OK, "customer_id": "pseudonym:p_" + "0f" * 16})
    assert isinstance(result, Rejection) and "reserved" in result.detail
    # a raw id that merely looks like a pseudonym is an ordinary id
    assert dec({**OK, "customer_id": "p_" + "0f" * 16}).customer_id == "p_" + "0f" * 16


def test_any_valid_id_is_nfc_without_format_or_control_characters():
    """Whatever text a producer sends as ids, what validation lets through is NFC and holds
    no Cc, Cf, Zl or Zp character; and the NFD spelling of a valid id is the same id."""
    import unicodedata

    from hypothesis import given, settings
    from hypothesis import strategies as st

    # any characters, with decomposed letters, Hangul jamo and invisible ones made likely
    pieces = st.characters(exclude_categories=("Cs",)) | st.sampled_from(
        ["e\u0301", "\u202e", "\u200b", "A\u030a", "\u1100\u1161", "\x00", " "]
    )
    text = st.lists(pieces, min_size=1, max_size=20).map("".join)

    @settings(max_examples=500, deadline=None)
    @given(text, text, text)
    def check(customer_id, order_id, event_id):
        event = dec({**OK, "customer_id": customer_id, "order_id": order_id,
                     "event_id": event_id})  # fmt: skip
        if isinstance(event, Rejection):
            return
        for value in (event.customer_id, event.order_id, event.event_id):
            assert value == unicodedata.normalize("NFC", value)
            assert not {unicodedata.category(ch) for ch in value} & {"Cc", "Cf", "Zl", "Zp"}
        twin = dec({**OK, "customer_id": unicodedata.normalize("NFD", customer_id),
                    "order_id": order_id, "event_id": event_id})  # fmt: skip
        assert twin.customer_id == event.customer_id

    check()


@pytest.mark.parametrize(
    ("amount", "why"),
    [
        ("1." + "0" * 60_000 + "1", "decimal places"),  # the audit's 60 KB amount
        ("12.3456789", "decimal places"),
        ("0.0000001", "decimal places"),
        ("1E-7", "decimal places"),
        ("1234567890123.123456", "significant digits"),  # 19 digits
    ],
)
def test_an_amount_with_too_many_digits_goes_to_the_dlq(amount, why):
    result = dec({**OK, "amount": amount}, max_amount=1e20)
    assert isinstance(result, Rejection) and result.reason == "absurd_amount"
    assert why in result.detail and len(result.detail) < 300


@pytest.mark.parametrize("where", ["discount", "items"])
def test_every_money_field_is_bounded(where):
    value = "0." + "1" * 7  # 7 decimal places
    extra = {"discount": value} if where == "discount" else {"items": [{"price": value}]}
    result = dec({**OK, **extra})
    assert isinstance(result, Rejection) and result.reason == "absurd_amount"


@pytest.mark.parametrize(
    ("amount", "stored"),
    [
        ("12.123456", "12.123456"),  # 6 places: kept exactly
        ("12.1234560000", "12.1234560000"),  # trailing zeros are not digits of the amount
        ("123456789012.123456", "123456789012.123456"),  # 18 significant digits
        ("1E+3", "1E+3"),
        (19.99, "19.99"),  # a JSON number
        (0.1 + 0.2, "0.300000"),  # a float's noise past 6 places is rounded away
    ],
)
def test_amounts_within_the_bounds_are_kept(amount, stored):
    result = dec({**OK, "amount": amount}, max_amount=1e20)
    assert isinstance(result, Purchase) and str(result.amount) == stored


def test_an_audience_count_names_a_category_as_events_spell_it():
    """Events' categories are NFC; a definition spelling one in NFD must count them."""
    from streams.audiences.definitions import parse

    when = {"count": "view", "category": "cafe\u0301", "within_days": 7, "at_least": 1}
    audiences = parse(json.dumps({"audiences": [{"id": "c", "name": "C", "when": when}]}))
    click = dec({"event_id": "e", "customer_id": "c", "type": "click", "action": "view",
                 "category": "cafe\u0301", "ts": 5})  # fmt: skip
    assert set(audiences.counts) == {f"view:{click.category}"} == {"view:caf\u00e9"}
