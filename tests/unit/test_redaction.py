"""A password in REDIS_URL, in any form redis-py reads one (``user:password@``,
``:password@``, a ``password`` query argument, percent-encoded or not), is never written
out: not by the settings, not by `rtba stats` or `rtba stack status` (text or JSON), not
by the API's 503 (docs/security.md)."""

from __future__ import annotations

import contextlib
import io
import os
from unittest import mock
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.cli.main import main
from streams.errors import ConfigError
from streams.settings import Settings, redacted

# A closed port: every command fails at once, with the URL in its message.
FORMS = [
    "redis://rtba:{pw}@127.0.0.1:1/0",
    "redis://:{pw}@127.0.0.1:1/0",
    "redis://127.0.0.1:1/0?password={pw}",
    "redis://127.0.0.1:1/0?socket_timeout=1&password={pw}&username=rtba",
    "redis://127.0.0.1:1/0?pass%77ord={pw}",  # redis-py decodes the argument's name
    "redis://127.0.0.1:1/0?PASSWORD={pw}",  # not redis-py's: refused, and still not shown
    "redis://rtba:{pw}@127.0.0.1:1/0?password={pw}",
    "rediss://127.0.0.1:1/0?password={pw}",
    "unix:///tmp/rtba-no-such.sock?password={pw}",
]
# "S3cr" keeps a generated password from being a word of a message by chance.
PASSWORDS = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)


def leaks(text: str, password: str) -> bool:
    return password in text or quote(password, safe="") in text


def run(argv: list[str], env: dict) -> str:
    """`rtba ARGV` in this process: its stdout and stderr together."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(out):
        with contextlib.redirect_stderr(err):
            main(argv)
    return out.getvalue() + err.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(form=st.sampled_from(FORMS), tail=PASSWORDS)
def test_no_message_shows_a_password_given_in_redis_url(form, tail, tmp_path_factory):
    password = "S3cr" + tail
    url = form.format(pw=quote(password, safe=""))
    env = {"REDIS_URL": url, "KAFKA_BOOTSTRAP": "127.0.0.1:1",
           "RTBA_HOME": str(tmp_path_factory.getbasetemp() / "no-stack")}  # fmt: skip
    shown = [redacted(url)]
    try:
        shown.append(repr(Settings.from_env(env)))
    except ConfigError as refused:
        shown.append(str(refused))
    bad_port = url.replace("127.0.0.1:1", "127.0.0.1:port")
    if bad_port != url:  # the one-line refusal of a URL that does not fit
        with pytest.raises(ConfigError) as refused:
            Settings.from_env({**env, "REDIS_URL": bad_port})
        shown.append(str(refused.value))
    for argv in (["stats"], ["stack", "status"], ["stack", "status", "--json"]):
        shown.append(run(argv, env))
    for text in shown:
        assert not leaks(text, password), text
    assert "***" in shown[0]


def test_the_api_503_does_not_show_a_password_given_in_redis_url(tmp_path):
    from fastapi.testclient import TestClient

    from streams.api.app import create_api

    password = "S3cret-api-503"
    for form in (FORMS[2], FORMS[4]):
        env = {"REDIS_URL": form.format(pw=password), "RTBA_HOME": str(tmp_path)}
        api = create_api(Settings.from_env(env))
        client = TestClient(api, base_url="http://127.0.0.1")  # no lifespan: no sampler
        answer = client.get("/segments")
        assert answer.status_code == 503, answer.text
        assert "Redis" in answer.text and not leaks(answer.text, password), answer.text


def test_a_query_argument_redis_py_does_not_know_is_one_line_not_a_traceback(tmp_path):
    env = {"REDIS_URL": "redis://127.0.0.1:1/0?PASSWORD=S3cret-typo", "RTBA_HOME": str(tmp_path)}
    out = run(["stats"], env)
    assert out.count("\n") == 1 and "Traceback" not in out, out
    assert "REDIS_URL=" in out and "'PASSWORD'" in out and "S3cret-typo" not in out, out


def test_every_message_that_interpolates_a_redis_url_redacts_it():
    """A static check of the f-strings of streams/ and launcher/ (the demo's header wrote
    the URL as given)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    shown, bare = 0, []
    for path in [*root.glob("streams/**/*.py"), *root.glob("launcher/*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not re.search(r"\bf[\"']", line):
                continue
            for expression in re.findall(r"\{([^{}]*redis_url[^{}]*)\}", line):
                shown += 1
                if not re.fullmatch(r"redacted\(.*\)", expression.strip()):
                    bare.append(f"{path.relative_to(root)}:{number}: {{{expression}}}")
    assert shown >= 4 and not bare, bare
