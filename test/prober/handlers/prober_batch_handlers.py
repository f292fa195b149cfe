"""Batch versions of prober_handlers (SPEC §13), for runs with ASYA_BATCH_SIZE > 1: each gets the
list of payloads and returns one result per input, in order. A failing input's slot holds its
exception, so it fails that envelope alone, exactly as the single handler fails its one call."""
import inspect
import time

import prober_handlers as single


def _check(payloads):
    if not isinstance(payloads, list):
        raise TypeError(f"a batch handler got a {type(payloads).__name__}, not a list: ASYA_BATCH_SIZE did not reach the runtime")
    single._report("max_batch", len(payloads))


def _per_slot(fn):
    def batch(payloads):
        _check(payloads)
        out = []
        for p in payloads:
            try:
                out.append(fn(p))
            except Exception as exc:  # the slot fails, the batch goes on
                out.append(exc)
        return out

    batch.__name__ = fn.__name__
    batch.__doc__ = f"Batch version of prober_handlers.{fn.__name__}: one call per slot."
    return batch


# Every public handler of prober_handlers, slot by slot (a new handler there is available here too).
for _name, _fn in list(vars(single).items()):
    if inspect.isfunction(_fn) and _fn.__module__ == single.__name__ and not _name.startswith("_"):
        globals()[_name] = _per_slot(_fn)


def slow(payloads):
    """GPU-like: one sleep for the whole batch (the longest asked for), not one per payload."""
    _check(payloads)
    time.sleep(max((_sleep_of(p) for p in payloads), default=0.0))
    return list(payloads)


def _sleep_of(payload):
    return float(payload.get("sleep", 0.05)) if isinstance(payload, dict) else 0.05
