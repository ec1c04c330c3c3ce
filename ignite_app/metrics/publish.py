"""How the app's report metrics publish: the report under the metric's name and its flat scalars beside it in
``engine.state.metrics``, never over a key someone else wrote."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

_UNSET = object()  # marks "this metric has not written the key", whatever another writer stored there


def check_metric_name(name: str, scalars: Collection[str], default: str) -> None:
    """Refuse attaching under ``name`` when it is one of the ``scalars`` the metric publishes beside its report."""
    if name in scalars:
        raise ValueError(f"metric name {name!r} collides with a scalar this metric publishes; use another name, for "
                         f"example the default {default!r}")


def publish(metrics: dict[str, Any], values: dict[str, Any], published: dict[str, Any], who: str) -> dict[str, Any]:
    """Put ``values`` into ``metrics`` (an engine's ``state.metrics``) and return them: the next call's ``published``.

    A key may hold what this metric wrote last time (next epoch, next evaluator run); anything else there was written
    by someone else, and overwriting it would silently corrupt their result.

    Raises:
        ValueError: a key of ``values`` holds another writer's value; ``who`` names the metric in the message.
    """
    clashes = [key for key in values if key in metrics and metrics[key] is not published.get(key, _UNSET)]
    if clashes:
        raise ValueError(f"{who} would overwrite engine.state.metrics keys {clashes} written by another metric or "
                         f"handler; it publishes {list(values)}; hint: rename the other metric")
    metrics.update(values)
    return values
