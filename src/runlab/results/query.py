"""The query language of ``Reader.filter``: MLXP's grammar, parsed (never evaluated).

A query is tokenized and parsed by recursive descent into a small syntax tree,
which is then compiled into a Polars expression against the columns of a run
table. Nothing in a query is ever handed to ``eval``: a string such as
``__import__('os').system('...')`` is a syntax error.

Grammar, lowest precedence first. As in MLXP, ``|``, ``&`` and ``~`` rank like
Python's ``or``, ``and`` and ``not``, below the comparisons, so that
``info.status == 'COMPLETE' & config.lr <= 1e-2`` needs no parentheses::

    query      := or_expr END
    or_expr    := and_expr ("|" and_expr)*
    and_expr   := not_expr ("&" not_expr)*
    not_expr   := "~" not_expr | "(" or_expr ")" | condition
    condition  := operand [ CMP operand | "in" list | "not" "in" list ]
    operand    := KEY | literal
    literal    := NUMBER | 'string' | "string" | true | false | None | null
    list       := "[" [ literal ("," literal)* [","] ] "]"
    CMP        := "==" | "!=" | "<" | "<=" | ">" | ">="
    KEY        := name ("." name)*  |  `any text between backquotes`

A condition compares a key with a literal (either side) or with another key; a
bare key must be a boolean column. Comparisons with a missing value are false
(and ``~`` of them true), as in MLXP; ``key == None`` tests for a missing value.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runlab.errors import UserError

__all__ = [
    "And",
    "Compare",
    "In",
    "Key",
    "Literal",
    "Not",
    "Or",
    "QueryError",
    "compile_query",
    "keys_of",
    "parse",
]


class QueryError(UserError, ValueError):
    """A query that cannot be parsed or compiled; ``str()`` shows where, with a caret."""

    def __init__(
        self,
        message: str,
        query: str,
        start: int,
        end: int | None = None,
        suggestions: Iterable[str] = (),
    ) -> None:
        if len(message) > 300:  # a message quoting a huge key stays one short line
            message = message[:297] + "..."
        self.message = message
        self.query = query
        self.start = max(0, min(start, len(query)))
        self.end = max(self.start + 1, end if end is not None else self.start + 1)
        self.suggestions = list(suggestions)
        head, _, self.detail = self.render().partition("\n")
        super().__init__(head)
        self.args = (self.render(),)  # str(): the message, then the query with a caret

    def __reduce__(
        self,
    ) -> tuple[Any, ...]:  # picklable with its query and caret, not only the message
        return (type(self), (self.message, self.query, self.start, self.end, self.suggestions))

    @property
    def position(self) -> int:
        """Offset of the offending text in the query (0-based)."""
        return self.start

    def render(self) -> str:
        head = self.message
        if self.suggestions:
            head += "; did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        # Quote a window of the query around the caret, never all of a long query.
        end = min(self.end, self.start + _WINDOW)  # the part underlined
        lo = max(0, self.start - _WINDOW)
        hi = min(len(self.query), end + _WINDOW)
        text = self.query[lo:hi].replace("\n", " ").replace("\t", " ").replace("\r", " ")
        text = ("..." if lo else "") + text + ("..." if hi < len(self.query) else "")
        caret = self.start - lo + (3 if lo else 0)
        width = max(1, min(end, hi + 1) - self.start)
        return f"{head}\n  {text}\n  {' ' * caret}{'^' * width}"


# --------------------------------------------------------------------- tokens
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>[-+]?(?:\d++(?:\.\d*+)?+|\.\d++)(?:[eE][-+]?\d++)?+(?![\w.]))
  | (?P<name>[A-Za-z_][\w-]*(?:\.[\w-]+)*)
  | (?P<bquote>`[^`]*`)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|<|>|&|\||~|\(|\)|\[|\]|,)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_CMP = ("==", "!=", "<", "<=", ">", ">=")
MAX_LENGTH = 100_000  # characters in a query
MAX_DEPTH = 1000  # nested parentheses and negations
_MAX_DIGITS = 400  # characters in a number literal (beyond any float, far below int()'s limit)
_WINDOW = 40  # characters of the query shown on each side of the caret
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True)
class _Tok:
    kind: str  # key, literal, op, kw, end, error
    text: str
    start: int
    end: int
    value: Any = None


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _bad_char(query: str, pos: int) -> QueryError:
    ch, n = query[pos], len(query)
    if ch in "'\"":
        return QueryError("unterminated string", query, pos, n)
    if ch == "`":
        return QueryError("unterminated `quoted key`", query, pos, n)
    if ch == "=":
        return QueryError("use '==' to compare", query, pos)
    if ch == "!":
        return QueryError("use '!=' for 'not equal' or '~' for 'not'", query, pos)
    if ch.isdigit() or (ch in "+-." and query[pos + 1 : pos + 2].isdigit()):
        return QueryError("not a number (a key cannot start with a digit)", query, pos)
    return QueryError(f"unexpected character {ch!r}", query, pos)


def _tokenize(query: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    n = len(query)
    while pos < n:
        m = _TOKEN.match(query, pos)
        if m is None:
            # Reported when the parser gets there, so that the first problem is named.
            toks.append(_Tok("error", query[pos], pos, pos + 1, _bad_char(query, pos)))
            return toks
        kind = m.lastgroup
        text = m.group()
        start, end = m.span()
        pos = end
        if kind == "ws":
            continue
        if kind == "number":
            if len(text) > _MAX_DIGITS:
                error = QueryError(f"a number of {len(text)} characters", query, start, end)
                toks.append(_Tok("error", text, start, end, error))
                return toks
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
            toks.append(_Tok("literal", text, start, end, value))
        elif kind == "string":
            toks.append(_Tok("literal", text, start, end, _unescape(text[1:-1])))
        elif kind == "bquote":
            if len(text) == 2:
                toks.append(
                    _Tok(
                        "error",
                        text,
                        start,
                        end,
                        QueryError("empty `quoted key`", query, start, end),
                    )
                )
                return toks
            toks.append(_Tok("key", text, start, end, text[1:-1]))
        elif kind == "name":
            low = text.lower()
            if text in ("in", "not"):
                toks.append(_Tok("kw", text, start, end))
            elif low in ("true", "false"):
                toks.append(_Tok("literal", text, start, end, low == "true"))
            elif low in ("none", "null"):
                toks.append(_Tok("literal", text, start, end, None))
            else:
                toks.append(_Tok("key", text, start, end, text))
        else:
            toks.append(_Tok("op", text, start, end))
    toks.append(_Tok("end", "", n, n))
    return toks


# ----------------------------------------------------------------------- tree
@dataclass(frozen=True)
class Key:
    name: str
    start: int
    end: int


@dataclass(frozen=True)
class Literal:
    value: Any
    start: int
    end: int


@dataclass(frozen=True)
class Compare:
    op: str
    left: Key | Literal
    right: Key | Literal
    op_start: int
    op_end: int


@dataclass(frozen=True)
class In:
    key: Key
    values: tuple[Any, ...]
    negate: bool
    start: int  # of the list
    end: int
    value_spans: tuple[tuple[int, int], ...] = field(default=())


@dataclass(frozen=True)
class Not:
    operand: Node
    start: int


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


Node = Key | Compare | In | Not | And | Or


def _describe(tok: _Tok) -> str:
    if tok.kind == "end":
        return "the end of the query"
    return repr(tok.text)


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.toks = _tokenize(query)
        self.i = 0

    def peek(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind == "error":
            raise tok.value
        return tok

    def take(self) -> _Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def error(self, message: str, tok: _Tok) -> QueryError:
        end = tok.end if tok.kind != "end" else tok.start + 1
        return QueryError(message, self.query, tok.start, end)

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.error("empty query", self.peek())
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(self._after_condition(tok), tok)
        return node

    def _after_condition(self, tok: _Tok) -> str:
        if tok.kind == "key" and tok.text.lower() in ("and", "or"):
            return f"use {'&' if tok.text.lower() == 'and' else '|'!r} instead of {tok.text!r}"
        if tok.text == "(":
            return "expected '&', '|' or the end of the query: calls are not part of the query language"
        if tok.kind == "op" and tok.text in _CMP:
            return "chained comparisons are not supported: join conditions with '&'"
        return f"expected '&', '|' or the end of the query, found {_describe(tok)}"

    def or_expr(self) -> Node:
        """``or_expr`` of the grammar, parsed with explicit stacks (operator precedence),
        so that nesting depth costs no recursion."""
        ops: list[_Tok] = []  # pending "(", "~", "&", "|"
        out: list[Node] = []
        depth = 0

        def reduce() -> None:
            op = ops.pop()
            right = out.pop()
            left = out.pop()
            out.append(And(left, right) if op.text == "&" else Or(left, right))

        def negate() -> None:
            nonlocal depth
            while ops and ops[-1].text == "~":
                out.append(Not(out.pop(), ops.pop().start))
                depth -= 1

        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.text in ("~", "("):
                depth += 1
                if depth > MAX_DEPTH:
                    raise self.error(f"the query is nested more than {MAX_DEPTH} levels deep", tok)
                ops.append(self.take())
                continue
            out.append(self.condition())
            negate()
            while True:  # after an operand: binary operators and closing parentheses
                tok = self.peek()
                if tok.kind == "op" and tok.text in ("&", "|"):
                    prec = 2 if tok.text == "&" else 1
                    while ops and ops[-1].text in ("&", "|"):
                        if (2 if ops[-1].text == "&" else 1) < prec:
                            break
                        reduce()
                    ops.append(self.take())
                    break
                if tok.kind == "op" and tok.text == ")" and any(o.text == "(" for o in ops):
                    while ops[-1].text != "(":
                        reduce()
                    ops.pop()
                    self.take()
                    depth -= 1
                    negate()
                    continue
                while ops and ops[-1].text in ("&", "|"):
                    reduce()
                if ops:  # an open parenthesis (a pending "~" was applied already)
                    opened = ops[-1]
                    if tok.kind == "end":
                        raise QueryError("unclosed '('", self.query, opened.start, opened.end)
                    raise self.error(f"expected ')', found {_describe(tok)}", tok)
                return out[-1]

    def operand(self) -> Key | Literal:
        tok = self.peek()
        if tok.kind == "key":
            self.take()
            return Key(tok.value, tok.start, tok.end)
        if tok.kind == "literal":
            self.take()
            return Literal(tok.value, tok.start, tok.end)
        if tok.kind == "op" and tok.text == "[":
            raise self.error("a list may only follow 'in' or 'not in'", tok)
        raise self.error(
            f"expected a condition (a key such as config.lr), found {_describe(tok)}", tok
        )

    def condition(self) -> Node:
        left = self.operand()
        tok = self.peek()
        if tok.kind == "op" and tok.text in _CMP:
            self.take()
            right = self.operand()
            if isinstance(left, Literal) and isinstance(right, Literal):
                raise QueryError(
                    "a comparison needs a key on one side", self.query, left.start, right.end
                )
            return Compare(tok.text, left, right, tok.start, tok.end)
        if tok.kind == "kw":
            negate = False
            if tok.text == "not":
                self.take()
                nxt = self.peek()
                if not (nxt.kind == "kw" and nxt.text == "in"):
                    raise self.error("expected 'in' after 'not' (write '~' to negate)", nxt)
                negate = True
                tok = nxt
            self.take()  # 'in'
            if not isinstance(left, Key):
                raise QueryError("'in' needs a key on its left", self.query, left.start, left.end)
            return self.in_list(left, negate)
        if isinstance(left, Literal):
            raise self.error(f"expected a comparison operator after {left.value!r}", tok)
        if tok.kind == "op" and tok.text == "(":
            raise self.error(
                f"unexpected '(' after {left.name!r}: calls are not part of the query language",
                tok,
            )
        return left  # a bare key: a boolean column

    def in_list(self, key: Key, negate: bool) -> In:
        open_ = self.peek()
        if not (open_.kind == "op" and open_.text == "["):
            raise self.error(f"expected a list such as ['a', 'b'], found {_describe(open_)}", open_)
        self.take()
        values: list[Any] = []
        spans: list[tuple[int, int]] = []
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.text == "]":
                self.take()
                break
            if tok.kind != "literal":
                if tok.kind == "end":
                    raise QueryError("unclosed '['", self.query, open_.start, open_.end)
                raise self.error(f"expected a value in the list, found {_describe(tok)}", tok)
            self.take()
            values.append(tok.value)
            spans.append((tok.start, tok.end))
            sep = self.peek()
            if sep.kind == "op" and sep.text == ",":
                self.take()
            elif not (sep.kind == "op" and sep.text == "]"):
                if sep.kind == "end":
                    raise QueryError("unclosed '['", self.query, open_.start, open_.end)
                raise self.error(f"expected ',' or ']', found {_describe(sep)}", sep)
        return In(key, tuple(values), negate, open_.start, self.toks[self.i - 1].end, tuple(spans))


def parse(query: str) -> Node:
    """Parse ``query`` into a syntax tree; raise :class:`QueryError` on a syntax error."""
    if not isinstance(query, str):
        raise TypeError(f"a query is a string, not {type(query).__name__}")
    if len(query) > MAX_LENGTH:
        raise QueryError(
            f"the query is {len(query):,} characters long, over the limit of {MAX_LENGTH:,}",
            query,
            MAX_LENGTH,
            len(query),
        )
    return _Parser(query).parse()


def keys_of(node: Node) -> list[Key]:
    """Every key the query refers to, in order."""
    out: list[Key] = []
    todo: list[Any] = [node]  # a stack: no recursion, however deep the query
    while todo:
        n = todo.pop()
        if isinstance(n, Key):
            out.append(n)
        elif isinstance(n, Compare):
            todo += [n.right, n.left]
        elif isinstance(n, In):
            out.append(n.key)
        elif isinstance(n, Not):
            todo.append(n.operand)
        elif isinstance(n, (And, Or)):
            todo += [n.right, n.left]
    return out


def _terms(node: And | Or) -> list[Node]:
    """The operands of a chain of the same operator (``a & (b & c)`` -> a, b, c)."""
    kind = type(node)
    out: list[Node] = []
    todo: list[Node] = [node]
    while todo:
        n = todo.pop()
        if type(n) is kind:
            todo += [n.right, n.left]
        else:
            out.append(n)
    return out


# -------------------------------------------------------------------- compile
def suggest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known keys closest to ``name`` (spelling, or the same last segments)."""
    known = list(known)
    tail = [k for k in known if k.endswith("." + name)]
    close = difflib.get_close_matches(name, known, n=n, cutoff=0.6)
    if close:  # only the matches about as close as the best one
        score = [difflib.SequenceMatcher(None, name, k).ratio() for k in close]
        close = [k for k, r in zip(close, score, strict=True) if r >= max(score) - 0.08]
    if not close and "." in name:
        # Compare the last segment too: `config.optimizer.lrr` -> `config.optimizer.lr`.
        head, _, last = name.rpartition(".")
        same_head = [k for k in known if k.rpartition(".")[0] == head]
        close = [
            f"{head}.{m}"
            for m in difflib.get_close_matches(
                last, [k.rpartition(".")[2] for k in same_head], n=n, cutoff=0.6
            )
        ]
    out: list[str] = []
    for k in tail + close:
        if k not in out:
            out.append(k)
    return out[:n]


def _kind(dtype: Any) -> str:
    """A coarse type class of a Polars dtype: number, string, bool, null, list, other."""
    import polars as pl

    if dtype == pl.Null:
        return "null"
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_numeric():
        return "number"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "string"
    if isinstance(dtype, (pl.List, pl.Array)):
        return "list"
    return "other"


def _lit_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


_EXAMPLE = {"number": "a number such as 0.01", "string": "a quoted string such as 'GD'"}
_EXAMPLE["bool"] = "true or false"


class _Compiler:
    def __init__(self, query: str, schema: Mapping[str, Any]) -> None:
        self.query = query
        self.schema = schema

    def dtype(self, key: Key) -> Any:
        try:
            return self.schema[key.name]
        except KeyError:
            raise QueryError(
                f"unknown key {key.name!r}",
                self.query,
                key.start,
                key.end,
                suggest(key.name, self.schema),
            ) from None

    def check(self, key: Key, value: Any, start: int, end: int) -> Any:
        """Raise if ``value`` cannot be compared with ``key``'s column; return it."""
        col, lit = _kind(self.dtype(key)), _lit_kind(value)
        if lit == "null" or col in ("null", "other") or col == lit:
            return value
        if col == "list":
            raise QueryError(
                f"{key.name} holds lists, which cannot be compared", self.query, key.start, key.end
            )
        raise QueryError(
            f"{key.name} holds {'numbers' if col == 'number' else col + ' values'}: "
            f"compare it with {_EXAMPLE[col]}",
            self.query,
            start,
            end,
        )

    def compile(self, node: Node) -> Any:
        """The expression of ``node``, built without recursion: chains of ``&`` or ``|``
        become one ``all_horizontal``/``any_horizontal`` (every operand is non-null,
        so this is the same), and ``~~x`` is ``x``, so deep queries stay shallow."""
        import polars as pl

        done: dict[int, Any] = {}
        todo: list[tuple[Node, bool]] = [(node, False)]
        while todo:
            n, ready = todo.pop()
            if isinstance(n, Not):
                inner, flips = n.operand, 1
                while isinstance(inner, Not):
                    inner, flips = inner.operand, flips + 1
                if not ready:
                    todo += [(n, True), (inner, False)]
                else:
                    done[id(n)] = ~done[id(inner)] if flips % 2 else done[id(inner)]
            elif isinstance(n, (And, Or)):
                terms = _terms(n)
                if not ready:
                    todo.append((n, True))
                    todo += [(t, False) for t in reversed(terms)]
                else:
                    exprs = [done[id(t)] for t in terms]
                    if len(exprs) == 2:
                        a, b = exprs
                        done[id(n)] = (a & b) if isinstance(n, And) else (a | b)
                    else:
                        horizontal = pl.all_horizontal if isinstance(n, And) else pl.any_horizontal
                        done[id(n)] = horizontal(exprs)
            else:
                done[id(n)] = self.leaf(n)
        return done[id(node)]

    def leaf(self, node: Node) -> Any:
        import polars as pl

        if isinstance(node, Key):
            if _kind(self.dtype(node)) not in ("bool", "null"):
                raise QueryError(
                    f"{node.name} is not a boolean: compare it with a value, e.g. {node.name} == ...",
                    self.query,
                    node.start,
                    node.end,
                )
            return pl.col(node.name).fill_null(False)
        if isinstance(node, In):
            for value, (s, e) in zip(node.values, node.value_spans, strict=True):
                self.check(node.key, value, s, e)
            present = [v for v in node.values if v is not None]
            col = pl.col(node.key.name)
            dtype = self.dtype(node.key)
            kind = _kind(dtype)
            if kind == "number" and (
                dtype.is_float() or any(isinstance(v, float) for v in present)
            ):
                col = col.cast(pl.Float64)
                present = [float(v) for v in present]
            if kind == "null" or not present:
                expr = pl.lit(False)
            else:
                expr = col.is_in(present).fill_null(False)
            if None in node.values:
                expr = expr | col.is_null()
            return ~expr if node.negate else expr
        if isinstance(node, Compare):
            return self.compare(node)
        raise TypeError(f"not a query node: {node!r}")  # pragma: no cover

    def compare(self, node: Compare) -> Any:
        import polars as pl

        left, right, op = node.left, node.right, node.op
        if isinstance(left, Literal):  # 0.1 > config.lr  ->  config.lr < 0.1
            left, right, op = right, left, _FLIP[op]
        assert isinstance(left, Key)
        if isinstance(right, Key):
            a, b = _kind(self.dtype(left)), _kind(self.dtype(right))
            if "null" not in (a, b) and a != b:
                raise QueryError(
                    f"cannot compare {left.name} ({a}) with {right.name} ({b})",
                    self.query,
                    left.start,
                    right.end,
                )
            return _apply(op, pl.col(left.name), pl.col(right.name)).fill_null(False)
        value = self.check(left, right.value, right.start, right.end)
        col = pl.col(left.name)
        if value is None:
            if op == "==":
                return col.is_null()
            if op == "!=":
                return col.is_not_null()
            raise QueryError(
                f"only '==' and '!=' compare with {right.value!r}",
                self.query,
                node.op_start,
                node.op_end,
            )
        if _kind(self.dtype(left)) == "bool" and op not in ("==", "!="):
            raise QueryError(
                f"{left.name} is a boolean: use '==' or '!='",
                self.query,
                node.op_start,
                node.op_end,
            )
        if _kind(self.dtype(left)) == "null":
            return pl.lit(False)
        return _apply(op, col, pl.lit(value)).fill_null(False)


def _apply(op: str, a: Any, b: Any) -> Any:
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def compile_query(query: str | Node, schema: Mapping[str, Any], source: str | None = None) -> Any:
    """Compile a query (string or parsed tree) into a boolean ``polars.Expr``.

    ``schema`` maps every known column to its Polars dtype; unknown keys and
    values of the wrong type raise :class:`QueryError` naming the closest keys.
    """
    if isinstance(query, str):
        source, node = query, parse(query)
    else:
        node = query
    return _Compiler(source or "", schema).compile(node)
