"""What may be recorded or shown: locations with their credentials masked.

The rule (DESIGN.md: "no credential is ever written into a record"): a
password never enters a record (MLflow params, tags and artifacts, Optuna
attributes, files) nor any output (stdout, stderr, log lines). Where a store's
location is recorded at all, it is recorded masked, with ``***`` in place of
the password. Every writer takes the recordable form from here:

- :func:`mask_url` for one URL (a tracking URI, a storage URL);
- :func:`mask_urls_in` for free text that may quote URLs (error messages,
  override strings such as ``tracking.uri=postgresql://u:pw@h/db``);
- :func:`recordable_config` for a whole config about to be logged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

MASK = "***"
#: query arguments that carry a password (libpq's ``password``, some drivers' ``pwd``)
PASSWORD_KEYS = frozenset({"password", "pass", "passwd", "pwd"})
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"]+")


def mask_url(url: str) -> str:
    """``url`` with the password (user part and ``?password=`` style arguments) replaced by ``***``.

    Works for passwords that hold ``/``, ``?`` or ``@`` unencoded, which a
    split at the first ``/`` or ``@`` would leave in clear. Text that is not
    a URL (a journal file path) is returned as it is.
    """
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    # credentials need an "@"; without one SQLAlchemy (0.3 s to import) would find no password either
    parsed = _sqlalchemy_url(url) if "@" in rest else None
    if parsed is not None and parsed.password is not None and rest.count("@") == 1:
        scheme, rest = parsed.render_as_string(hide_password=True).split("://", 1)
    else:  # no password in the user part, or an unencoded "@" that SQLAlchemy splits too early
        rest = _mask_userinfo(rest)
    head, sep, query = rest.partition("?")
    if sep:
        query = "&".join(_mask_argument(part) for part in query.split("&"))
    return f"{scheme}://{head}{sep}{query}"


def _sqlalchemy_url(url: str) -> Any:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url)
    except Exception:  # not a URL SQLAlchemy can parse (or no SQLAlchemy): the manual rule does it
        return None


def _mask_userinfo(rest: str) -> str:
    """``user:pw@host/db`` -> ``user:***@host/db``; the password ends at the last ``@``.

    For URLs SQLAlchemy cannot split right: an unencoded ``@`` inside the
    password is handled by taking the last ``@`` of the URL as the end of the
    credentials (at worst a path with an ``@`` is masked too: more hidden,
    nothing shown).
    """
    if rest.startswith("/") or "@" not in rest:  # sqlite:///path, no credentials
        return rest
    user_end = rest.find(":")
    at = rest.rfind("@")
    if user_end == -1 or user_end > at or "/" in rest[:user_end]:
        return rest  # user@host: a user name alone is no secret
    return f"{rest[:user_end]}:{MASK}@{rest[at + 1 :]}"


def _mask_argument(part: str) -> str:
    key, eq, _value = part.partition("=")
    return f"{key}={MASK}" if eq and key.lower() in PASSWORD_KEYS else part


def mask_urls_in(text: str) -> str:
    """Every URL inside ``text`` masked (error messages, ``key=url`` override strings)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(_mask_url_in_text, text)


def _mask_url_in_text(match: re.Match) -> str:
    """The URL of ``match`` masked; punctuation the sentence put after it (``db: refused``) stays outside."""
    found = match.group(0)
    url = found.rstrip(":;,.)")
    return mask_url(url) + found[len(url) :]


def recordable_overrides(overrides: Iterable[str]) -> list[str]:
    """Command-line overrides as they may be recorded: any URL in them masked."""
    return [mask_urls_in(str(o)) for o in overrides]


def recordable_container(cfg: DictConfig | Mapping[str, Any]) -> dict:
    """``cfg`` resolved to plain Python, with every URL-valued string masked (one pass)."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    return _mask_tree(container)


def recordable_config(cfg: DictConfig | Mapping[str, Any]) -> DictConfig:
    """A copy of ``cfg``, resolved, with every URL-valued string masked.

    ``tracking.uri`` is the usual one; any other string that holds a URL with
    a password (a data URL, a plugin's store) is masked too. The copy is what
    params, ``config.yaml`` and every other record are made from.
    """
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    return OmegaConf.create(_mask_tree(container))


def _mask_tree(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _mask_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_tree(v) for v in value]
    if isinstance(value, str):
        return mask_urls_in(value)
    return value


class MaskedStream:
    """A text stream that writes every URL masked (``user:***@host``); the rest is the wrapped stream's."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(mask_urls_in(text))

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def masked_stdout(when: bool = True):
    """A context in which ``sys.stdout`` writes every URL masked (``when``: Hydra's flags such as ``--cfg``,
    ``--help``, ``--info``, which print the composed config)."""
    import contextlib
    import sys

    return contextlib.redirect_stdout(MaskedStream(sys.stdout)) if when else contextlib.nullcontext()
