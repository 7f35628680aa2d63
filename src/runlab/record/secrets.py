"""What counts as a credential, in one place: by the name of its key, or by its value.

A value is a secret when

- its key (a config key, an environment variable, a ``key=value`` override) names
  one: a part of the key, split at ``_``, ``-``, ``.``, is ``password``, ``passwd``,
  ``secret``, ``token``, ``apikey``, ``credential(s)``, ``passphrase``, or the key
  holds ``api_key``, ``access_key``, ``private_key``, ``auth_token``, ``client_secret``
  (``max_tokens`` and ``tokenizer`` are not secrets); and its value is text of at
  least :data:`MIN_SECRET_LEN` characters (``token_type: bpe`` is no secret either);
- or its value looks like one, whatever its key: a URL with a password in it
  (``https://user:token@host``), or a token of a known form (GitHub, Hugging Face,
  OpenAI, Weights & Biases, AWS, Slack, a JSON web token).

- or its value is the value of an environment variable whose name names a
  credential (``WANDB_API_KEY``, ``HF_TOKEN``...), wherever it appears: so a key
  resolved into the config by ``${oc.env:WANDB_API_KEY}`` is caught under any key.

Add your own key names with ``RUNLAB_SECRET_KEYS`` (comma-separated parts, e.g.
``RUNLAB_SECRET_KEYS=hub_login,mytoken``). Every record runlab writes
(``runlab.record.files.write_record``, the sweep record, tracebacks) goes through
:func:`redact`; ``runlab verify`` reports any secret still found in a record.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

REDACTED = "***"
MIN_SECRET_LEN = 8
SECRET_KEYS_ENV = "RUNLAB_SECRET_KEYS"

_KEY_PARTS = frozenset(
    {"password", "passwd", "secret", "token", "apikey", "credential", "credentials", "passphrase"}
)
_KEY_PHRASES = ("api_key", "access_key", "private_key", "auth_token", "client_secret")
_SPLIT = re.compile(r"[_\-.\s/]+")
_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)([^/\s@]+)(@)")
_TOKENS = re.compile(
    r"\b("
    r"gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub
    r"|github_pat_[A-Za-z0-9_]{40,}"
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|sk-[A-Za-z0-9_\-]{20,}"  # OpenAI and others
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"  # JWT
    r")"
)


#: What every known token form begins with (:data:`_TOKENS`), in lower case: the screen
#: :func:`could_hold` looks for these (a token's text always holds its prefix).
_TOKEN_PREFIXES = (
    *(f"gh{c}_" for c in "pousr"),
    "github_pat_",
    "hf_",
    "sk-",
    "akia",
    *(f"xox{c}-" for c in "abprs"),
    "eyj",
)
#: Characters after which a text may hold more than it shows: an escape (JSON's and
#: YAML's ``\\``), a NUL (a UTF-16 or UTF-32 file read as UTF-8).
_OPAQUE = ("\\", "\x00")


def could_hold(text: str, env: frozenset[str] | None = None, extra: str | None = None) -> bool:
    """Whether the JSON or YAML ``text`` could hold a credential that :func:`find` finds in
    the data it parses to: ``False`` only when it surely holds none, so that a check of
    many files parses and walks only the few that may (``runlab verify``).

    A cheap screen: a key that names a secret, a token's prefix, a URL with a password,
    a credential variable's value each leave their characters in the text as they are,
    unless an escape (``\\``) or another encoding hides them; such a text, and any text
    when a credential variable's value or a ``RUNLAB_SECRET_KEYS`` part holds a character
    that the file may spell otherwise (a space, a quote, a backslash, a non-printable
    one), counts as one that could. ``env`` and ``extra``: as for :func:`find`.
    """
    screen = _screen(env_values() if env is None else env, _extra() if extra is None else extra)
    if screen is None or any(c in text for c in _OPAQUE):
        return True
    markers, values = screen
    if "@" in text and "://" in text:
        return True  # perhaps a URL with a password
    low = text.lower()
    for marker in markers:  # a loop, not any(): this runs once per record of every run
        if marker in low:
            return True
    return any(v in text for v in values)


@functools.lru_cache(maxsize=16)
def _screen(env: frozenset[str], extra: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The substrings :func:`could_hold` looks for: lower-case markers (key parts and
    phrases, token prefixes) and the credential variables' values; ``None`` when a value
    or a key part might be spelled otherwise in a file (then every text could hold one)."""
    parts = [p.strip().lower() for p in extra.split(",") if p.strip()]
    if not all(_verbatim(v) for v in (*env, *parts)):
        return None
    markers = set(_KEY_PARTS) | set(_KEY_PHRASES) | set(_TOKEN_PREFIXES) | set(parts)
    # A marker that holds another is found only where that one is: look for the shorter.
    needed = sorted(m for m in markers if not any(o != m and o in m for o in markers))
    return tuple(needed), tuple(env)


def _verbatim(value: str) -> bool:
    """Whether ``value`` appears as it is in any JSON or YAML text of a string holding it
    (no escape needed, no line folding): printable ASCII, no space, quote or backslash."""
    return value.isascii() and value.isprintable() and not any(c in value for c in " '\"\\")


def env_values(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The values of the environment's credential variables (named as :func:`secret_key`
    says), at least :data:`MIN_SECRET_LEN` long: redacted wherever they appear."""
    environ = dict(os.environ if environ is None else environ)  # one read of the environment
    extra = environ.get(SECRET_KEYS_ENV, "")
    return frozenset(
        v
        for k, v in environ.items()
        if len(v) >= MIN_SECRET_LEN and v != REDACTED and secret_key(k, extra)
    )


def secret_key(key: object, extra: str | None = None) -> bool:
    """Whether a key or variable name names a credential (see the module). ``extra``: the
    value of ``RUNLAB_SECRET_KEYS`` (read when not given)."""
    if not isinstance(key, str):
        return False
    return _secret_key(key.lower(), os.environ.get(SECRET_KEYS_ENV, "") if extra is None else extra)


@functools.lru_cache(maxsize=8192)
def _secret_key(low: str, extra_raw: str) -> bool:
    parts = set(_SPLIT.split(low))
    if parts & _KEY_PARTS or any(p in low for p in _KEY_PHRASES):
        return True
    extra = {p.strip().lower() for p in extra_raw.split(",") if p.strip()}
    return bool(extra and (parts & extra or any(e in low for e in extra)))


def secret_value(value: object, env: frozenset[str] | None = None) -> bool:
    """Whether a text holds a credential whatever its key: a URL with a password, a token,
    the value of a credential variable (``env``: :func:`env_values`, found when not given)."""
    if not isinstance(value, str):
        return False
    if "@" in value and any(m.group(2) != REDACTED for m in _URL_PASSWORD.finditer(value)):
        return True  # a password in a URL, however short (an already redacted one is not)
    if len(value) < MIN_SECRET_LEN:
        return False
    if any(v in value for v in (env_values() if env is None else env)):
        return True
    # A bare 40-hex key (W&B's) looks like a git commit: it counts only under a secret key.
    return _TOKENS.search(value) is not None


def is_secret(
    key: object, value: object, env: frozenset[str] | None = None, extra: str | None = None
) -> bool:
    """Whether ``value`` under ``key`` is a credential (by key name or by value)."""
    if isinstance(value, str) and value == REDACTED:
        return False
    keyed = isinstance(value, str) and len(value) >= MIN_SECRET_LEN and secret_key(key, extra)
    return keyed or secret_value(value, env)


def find(data: Any, path: str = "", env: frozenset[str] | None = None) -> Iterator[str]:
    """The dotted paths of the secrets in a JSON-like value (dicts, lists, text). ``env``:
    :func:`env_values`, found when not given (pass it to check many values)."""
    return _find(data, path, env_values() if env is None else env, _extra())


def _extra() -> str:
    return os.environ.get(SECRET_KEYS_ENV, "")


def _find(data: Any, path: str, env: frozenset[str], extra: str) -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(value, dict | list):
                yield from _find(value, sub, env, extra)
            elif is_secret(key, value, env, extra):
                yield sub
    elif isinstance(data, list):
        for i, value in enumerate(data):
            sub = f"{path}[{i}]"
            if isinstance(value, dict | list):
                yield from _find(value, sub, env, extra)
            elif isinstance(value, str) and (
                secret_value(value, env) or _assignment_secret(value, env, extra)
            ):
                yield sub
    elif isinstance(data, str) and secret_value(data, env):
        yield path or "(value)"


def _assignment_secret(text: str, env: frozenset[str], extra: str | None = None) -> bool:
    """``key=value`` (an override, a command-line word) whose key names a secret."""
    key, sep, value = text.partition("=")
    return bool(sep) and is_secret(key.lstrip("+~").rsplit(".", 1)[-1], value, env, extra)


def redact_text(text: str, env: frozenset[str] | None = None) -> str:
    """``text`` with the password of any URL, the value of every credential variable of the
    environment and every known token replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
    for value in sorted(env_values() if env is None else env, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return _TOKENS.sub(REDACTED, text)


def redact(data: Any) -> Any:
    """A copy of a JSON-like value with every secret replaced by ``***`` (see the module)."""
    return _redact(data, env_values())


def _redact(data: Any, env: frozenset[str]) -> Any:
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict | list | tuple):
                out[key] = _redact(value, env)
            elif is_secret(key, value, env):
                out[key] = REDACTED
            else:
                out[key] = redact_text(value, env) if isinstance(value, str) else value
        return out
    if isinstance(data, list | tuple):
        items = [
            _redact(v, env)
            if isinstance(v, dict | list | tuple)
            else (_redact_assignment(v, env) if isinstance(v, str) else v)
            for v in data
        ]
        return items if isinstance(data, list) else type(data)(items)
    return redact_text(data, env) if isinstance(data, str) else data


def _redact_assignment(text: str, env: frozenset[str]) -> str:
    if _assignment_secret(text, env):
        return text.partition("=")[0] + "=" + REDACTED
    return redact_text(text, env)
