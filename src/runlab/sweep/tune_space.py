"""The search space of ``runlab tune``, in the syntax of Hydra's Optuna sweeper.

Each override is parsed by Hydra's own override parser; sweeps become Optuna
distributions, plain overrides are passed to every trial unchanged:

==========================================  ==========================================
override                                    distribution
==========================================  ==========================================
``lr='tag(log, interval(1e-4, 1e-1))'``     ``FloatDistribution(1e-4, 1e-1, log=True)``
``x='interval(-5, 5)'``                     ``FloatDistribution(-5.0, 5.0)``
``n='int(interval(1, 9))'``                 ``IntDistribution(1, 9)`` (``tag(log, ...)``: log)
``model='choice(mlp,cnn)'``, ``model=a,b``  ``CategoricalDistribution(['mlp', 'cnn'])``
``batch_size='range(32,256,step=32)'``      ``IntDistribution(32, 256, step=32)``
==========================================  ==========================================

``range`` means what it means in Hydra's Optuna sweeper, so that its configs search
the same space here: the stop is one of the values (32, 64, ..., 256), unlike a
``runlab submit`` sweep, where Hydra's ``range`` excludes it. A float range becomes
a stepped ``FloatDistribution``. ``shuffle(...)`` and
``glob(...)`` are refused with what to write instead.
"""

from __future__ import annotations

import math
import re
from typing import Any, cast

from runlab.errors import UserError


class SpaceError(UserError, ValueError):
    """A search-space entry that cannot become an Optuna distribution; one line for the user."""


_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-./]*\Z")
_WORDS = {"true", "false", "null", "nan", "inf", "none"}


def parse(arguments: list[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``arguments`` into plain overrides and the search space ``{key: text}``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    fixed: list[str] = []
    space: dict[str, str] = {}
    for argument in arguments:
        try:
            (override,) = parser.parse_overrides([argument])
        except HydraException as exc:
            lines = [x for x in str(exc).splitlines() if not x.startswith("Error parsing")]
            raise SpaceError(f"invalid override {argument!r}: {' '.join(lines)}") from None
        if override.is_sweep_override():
            key = override.get_key_element()
            if key.startswith(("+", "~")) or override.is_add() or override.is_delete():
                raise SpaceError(
                    f"{argument!r}: a searched key must exist in the task's config; "
                    "write KEY=... without + or ~"
                )
            space[key] = argument.split("=", 1)[1]
            distribution(key, space[key])  # refuse now what cannot be searched
        else:
            fixed.append(argument)
    return fixed, space


def distribution(key: str, text: str) -> Any:
    """The Optuna distribution of ``key=text`` (Hydra's sweep syntax)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import HydraException
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    where = f"search space {key}={text}"
    try:
        (override,) = OverridesParser.create().parse_overrides([f"{key}={text}"])
    except HydraException as exc:
        raise SpaceError(f"{where}: {' '.join(str(exc).split())}") from None
    value = override.value()
    if not override.is_sweep_override():
        raise SpaceError(f"{where} is one value, not a range to search")
    if getattr(value, "shuffle", False):
        raise SpaceError(f"{where}: shuffle() has no meaning in a search; leave it out")
    if isinstance(value, ChoiceSweep):
        choices = list(override.sweep_iterator())
        for c in choices:
            if not isinstance(c, (str, int, float, bool, type(None))):
                raise SpaceError(f"{where}: choices must be numbers, strings or booleans")
        if not choices:
            raise SpaceError(f"{where}: no choices")
        # each choice checked above: a number, a string, a boolean or None
        return CategoricalDistribution(cast(list[str | int | float | bool | None], choices))
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step or 1
        if start is None or stop is None or not start < stop or step <= 0:
            raise SpaceError(f"{where}: a range needs start < stop and a positive step")
        # As Hydra's Optuna sweeper: the stop is a value of the search (unlike Hydra's sweep).
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (start, stop, step)):
            return IntDistribution(int(start), int(stop), step=int(step))
        return FloatDistribution(float(start), float(stop), step=float(step))
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        log = "log" in (value.tags or set())
        if low is None or high is None or not low < high:
            raise SpaceError(f"{where}: an interval needs low < high")
        if log and low <= 0:
            raise SpaceError(f"{where}: a log interval needs low > 0")
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise SpaceError(
        f"{where}: {type(value).__name__} cannot be searched; use interval(), "
        "tag(log, interval()), choice() or range()"
    )


def grid(space: dict[str, str]) -> dict[str, list[Any]]:
    """Every value of each key, for the grid sampler (intervals cannot be listed)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    out: dict[str, list[Any]] = {}
    for key, text in space.items():
        dist = distribution(key, text)
        if isinstance(dist, CategoricalDistribution):
            out[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            out[key] = list(range(dist.low, dist.high + 1, dist.step))
        elif getattr(dist, "step", None):
            n = round((dist.high - dist.low) / dist.step)
            out[key] = [dist.low + i * dist.step for i in range(n + 1)]
        else:
            raise SpaceError(
                f"the grid sampler lists every value, and {key}={text} is a continuous interval: "
                "use choice(...) or range(...) for it, or --sampler tpe|random"
            )
    return out


def override(key: str, value: Any) -> str:
    """``key=value`` as a Hydra override that parses back to ``value``."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, float):
        text = repr(value) if math.isfinite(value) else str(value)
    elif isinstance(value, int):
        text = str(value)
    else:
        text = str(value)
        if not _BARE.match(text) or text.lower() in _WORDS:
            text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={text}"
