"""`rtba erase`: a customer's right to be forgotten (docs/privacy.md)."""

from __future__ import annotations

import click

from streams.cli.common import json_option, log, print_json, require_stack, settings


@click.command()
@click.argument("customer_ids", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="do not ask")
@json_option
def erase(customer_ids, yes, as_json) -> int:
    """Remove every trace of customers from Redis and send their tombstones.

    Their state, their place in the due index and the outbox index, their unsent output
    events and their contribution to the population facts go; each output topic gets a
    tombstone (the customer's key, a null value). An event for the id afterwards starts
    a new profile. Exit code 1 when an id had no state (erased anyway: its tombstones
    are sent).

    \b
    Examples:
      rtba erase c000042 --yes
      rtba erase c000042 c000043 --yes --json
    """
    from streams import audit
    from streams.erasure import erase_customers
    from streams.privacy import customer_refs
    from streams.state.store import connect

    chosen = settings()
    require_stack(chosen)
    client = connect(chosen.redis_url, **chosen.redis_options())
    try:
        # another key than the workers' would erase nobody and say "had no state": the
        # key is checked before anything is asked or erased
        ref = customer_refs(chosen, client)
        stored = {ref(c): c for c in customer_ids}  # NFC, pseudonyms if on
        if not yes:
            click.confirm(
                f"Erase {len(customer_ids)} customer(s) of namespace {chosen.namespace!r} "
                "for good?",
                abort=True,
            )
        # the audit log (streams.audit): who, when, the id's hash, the outcome
        with audit.erasing(client, chosen.namespace, audit.cli_actor(), None, list(stored)) as done:
            reports = erase_customers(chosen, client, list(stored))
            done.extend(reports)
    finally:
        client.close()
    for report in reports:
        report["customer_id"] = stored[report["customer_id"]]  # as given
        if as_json:
            print_json(report)
        else:
            found = "erased" if report["had_state"] else "had no state; tombstones sent"
            unsent = report["unsent_events"]
            log(f"rtba erase: {report['customer_id']}: {found}"
                + (f" ({unsent} unsent output events dropped)" if unsent else ""))  # fmt: skip
    return 0 if all(r["had_state"] for r in reports) else 1


COMMANDS = [erase]
