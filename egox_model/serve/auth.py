"""The bearer token shared by `egox serve` and the `remote` backend.

The token comes from a file (first choice: it stays out of process listings and shell
history) or an environment variable. The server keeps only its SHA-256 digest and compares
digests with `hmac.compare_digest` (constant time), so the token itself never enters Ray's
state (deployment arguments are stored in Ray's control store).
"""
from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from egox_model.errors import ConfigError

__all__ = ["read_token", "token_digest", "token_matches"]


def read_token(token_file: str = "", token_env: str = "") -> str:
    """The token from `token_file` (if given) or the environment variable `token_env`
    (if given and set); "" when neither holds one. Surrounding whitespace is dropped."""
    if token_file:
        path = Path(token_file).expanduser()
        try:
            token = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"token file cannot be read: {err}", key="token_file",
                              value=token_file) from None
        if not token:
            raise ConfigError("token file is empty", key="token_file", value=token_file)
        return token
    return os.environ.get(token_env, "").strip() if token_env else ""


def token_digest(token: str) -> str:
    """Hex SHA-256 of the token (what the server stores)."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(authorization: str | None, digest: str) -> bool:
    """True when an `Authorization: Bearer TOKEN` header carries the token of `digest`."""
    if not authorization:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return hmac.compare_digest(token_digest(token.strip()), digest)
