"""rtba's error types: each is an ordinary mistake with a one-line message that says what
to do, and the exit code the CLI ends with (README, "Exit codes").

    0  done
    1  done, but something asked for was not found (a customer id, say)
    2  a bad argument or setting
    3  Kafka or Redis cannot be reached
    4  the data is not there yet (no model fitted, no purchases to fit on)
  130  interrupted (Ctrl-C, SIGTERM)
"""

from __future__ import annotations


class RtbaError(Exception):
    """An ordinary mistake: shown as one line, never as a traceback."""

    exit_code = 1


class ConfigError(RtbaError):
    """A setting or an argument that does not fit: names it and the form it expects."""

    exit_code = 2


class StackDown(RtbaError):
    """Kafka or Redis does not answer at the address in use."""

    exit_code = 3


class NotReady(RtbaError):
    """What was asked for needs data or a model the pipeline has not produced yet."""

    exit_code = 4


class NotFound(RtbaError):
    """Something asked for by name (an audience, say) does not exist."""

    exit_code = 1
