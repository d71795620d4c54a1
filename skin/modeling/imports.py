"""Building models from any thread without transformers' lazy-import race.

transformers exposes its classes through a lazy module (``_LazyModule``) that
resolves a name on first access; two threads resolving names at the same time
can see ``cannot import name 'TimmWrapperConfig' from 'transformers'`` (a known
race of the lazy module: one thread is still filling the namespace while the
other reads it; peft's own ``from transformers import ...`` takes part too). The
app loads its models in a warm-up thread while the first request may build the
photo-type gate's backbone in a request thread. So model building is serialized
process-wide: :func:`serialized` wraps the entry points (``create_model``,
``load_adapter``, ``skin.hub.load_classifier``) in one re-entrant lock, and
:func:`transformers_attrs` looks names up under it. Building two models at once
would gain nothing anyway: it is Python-bound and holds the GIL.
"""

from __future__ import annotations

import functools
import threading

_LOCK = threading.RLock()


def serialized(fn):
    """``fn`` run under the process-wide model-building lock."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _LOCK:
            return fn(*args, **kwargs)
    return wrapper


@serialized
def transformers_attrs(*names: str) -> tuple:
    """``getattr(transformers, name)`` for each of ``names``, resolved under the lock."""
    import transformers

    return tuple(getattr(transformers, name) for name in names)
