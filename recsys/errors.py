"""Ground: the errors a user can fix, as opposed to bugs — one base class the command line and
the API recognise.

`UserError`: bad data, a bad config, an unusable bundle, a busy work directory... The `recsys`
command prints its message on one line, no traceback, and exits with its `exit_code`
(sysexits.h where one fits). `RequestError`: an API request the model cannot answer as asked;
the API answers it with its `status` (4xx). Anything else is a bug: a traceback, or a 500.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what was expected, what was found, where."""

    exit_code = 1


class RequestError(UserError, ValueError):
    """A request the model cannot answer as asked (e.g. a filter on an unknown field)."""

    status = 422
