"""`QualityFilter`: a safe boolean expression over clip quality keys (no eval()).

Grammar (keywords case-insensitive):

    expr       := term ("or" term)*
    term       := factor ("and" factor)*
    factor     := "not" factor | "(" expr ")" | comparison
    comparison := KEY OP VALUE        OP: >= <= > < == !=
    VALUE      := a number (inf and nan allowed) or a quoted string

e.g. ``prior_psnr_db>=20 and prior_coverage>=0.5`` or ``backend=="wan" and flicker<8``.
A comparison with a nan score is false (a clip without the score fails a threshold on it).
Unknown keys are an error naming the known ones.
"""
from __future__ import annotations

import math
import operator
import re
from typing import Any, Callable, Iterable, Mapping

from egox_model.errors import ConfigError

__all__ = ["QualityFilter"]

_TOKEN = re.compile(r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?"
                    r"|inf|nan))(?![\w.])|(?P<str>\"[^\"]*\"|'[^']*')|(?P<op>>=|<=|==|!=|>|<)"
                    r"|(?P<paren>[()])|(?P<name>[A-Za-z_][\w.]*))")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
    "==": operator.eq, "!=": operator.ne}
Node = Callable[[Mapping[str, Any]], bool]


class QualityFilter:
    """A parsed expression; `QualityFilter(text, known_keys)(values) -> bool`."""

    def __init__(self, text: str, known_keys: Iterable[str] | None = None) -> None:
        self.text = text
        self.known_keys = None if known_keys is None else frozenset(known_keys)
        self.keys: set[str] = set()
        self._tokens = self._tokenize(text)
        self._pos = 0
        self._root = self._expr()
        if self._pos != len(self._tokens):
            self._fail(f"unexpected {self._tokens[self._pos][1]!r}")

    def __call__(self, values: Mapping[str, Any]) -> bool:
        """Whether `values` (key -> number or string) pass."""
        missing = sorted(self.keys - set(values))
        if missing:
            raise ConfigError(f"quality expression {self.text!r} uses {missing}, which these "
                              f"scores lack (they have {sorted(values)})")
        return self._root(values)

    # ---- parsing ---------------------------------------------------------------------------
    def _fail(self, reason: str) -> None:
        raise ConfigError(f"quality expression {self.text!r}: {reason}; write e.g. "
                          "\"prior_psnr_db>=20 and prior_coverage>=0.5\" (docs/lerobot.md)")

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if match is None:
                self._fail(f"cannot read {text[pos:].strip()!r}")
            kind = match.lastgroup
            tokens.append((kind, match.group(kind)))
            pos = match.end()
        if not tokens:
            self._fail("it is empty")
        return tokens

    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token[0] == "name" and token[1].lower() == word:
            self._pos += 1
            return True
        return False

    def _expr(self) -> Node:
        parts = [self._term()]
        while self._keyword("or"):
            parts.append(self._term())
        return parts[0] if len(parts) == 1 else (lambda v: any(p(v) for p in parts))

    def _term(self) -> Node:
        parts = [self._factor()]
        while self._keyword("and"):
            parts.append(self._factor())
        return parts[0] if len(parts) == 1 else (lambda v: all(p(v) for p in parts))

    def _factor(self) -> Node:
        if self._keyword("not"):
            inner = self._factor()
            return lambda v: not inner(v)
        token = self._peek()
        if token == ("paren", "("):
            self._pos += 1
            inner = self._expr()
            if self._peek() != ("paren", ")"):
                self._fail("a '(' is not closed")
            self._pos += 1
            return inner
        return self._comparison()

    def _comparison(self) -> Node:
        tokens = self._tokens[self._pos:self._pos + 3]
        if len(tokens) < 3 or tokens[0][0] != "name" or tokens[1][0] != "op" \
                or tokens[2][0] not in ("num", "str"):
            got = " ".join(t[1] for t in tokens) or "the end"
            self._fail(f"expected KEY OP VALUE at {got!r}")
        self._pos += 3
        key, op, (kind, raw) = tokens[0][1], _OPS[tokens[1][1]], tokens[2]
        if key.lower() in ("and", "or", "not"):
            self._fail(f"expected a key, got {key!r}")
        if self.known_keys is not None and key not in self.known_keys:
            self._fail(f"unknown key {key!r}; known: {', '.join(sorted(self.known_keys))}")
        self.keys.add(key)
        if kind == "str":
            text = raw[1:-1]
            return lambda v: op(str(v[key]), text)
        number = float(raw)

        def compare(values: Mapping[str, Any]) -> bool:
            try:
                value = float(values[key])
            except (TypeError, ValueError):
                return False
            return not (math.isnan(value) or math.isnan(number)) and op(value, number)
        return compare
