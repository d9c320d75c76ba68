"""Every key of one customer lands in one Redis Cluster slot, whatever the id holds:
the slot is computed by redis-py's own implementation of Redis's hash-tag rule."""

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from streams.state.keys import Keys


def slots(customer_id: str) -> set[int]:
    keys = Keys("behavior")
    names = [keys.customer(customer_id), keys.outbox(customer_id)]
    return {key_slot(name.encode()) for name in names}


# Any text a valid id can hold (no lone surrogates: they are not Unicode text), with braces
# and percent signs made likely.
IDS = st.text(st.sampled_from("ab{}%7D") | st.characters(exclude_categories=("Cs",)),
              min_size=1, max_size=40)  # fmt: skip


@given(IDS)
def test_a_customers_keys_share_one_slot(customer_id):
    assert len(slots(customer_id)) == 1


def test_ids_with_braces_that_broke_the_tag():
    for customer_id in ["}", "}x", "a}b", "{", "{}", "x{y}z", "%7D", "}{"]:
        assert len(slots(customer_id)) == 1, customer_id


def test_ids_stay_apart():
    keys = Keys("behavior")
    ids = ["a}", "a%7D", "a%257D", "a", "{a}", "%7Ba%7D"]
    assert len({keys.customer(i) for i in ids}) == len(ids)
