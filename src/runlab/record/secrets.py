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
