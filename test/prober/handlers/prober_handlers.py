"""Handlers the delivery prober drives. Plain functions, no imports from asya: like a user's code.

Each is wrapped (bottom of the file) to report, on stderr, how many calls it ever ran at once in
this process (`asya-prober-stats {"peak_in_flight": n}`, printed when the peak grows), so a run at
ASYA_CONCURRENCY > 1 can show its calls really overlapped (test/prober/local-pipeline.ts)."""
import functools
import inspect
import json
import os
import random
import sys
import threading
import time


def echo(payload):
    return payload


# A real handler takes some time. With 0 ms calls two never overlap, and a run at ASYA_CONCURRENCY > 1
# would not show that they can (the check in test/prober/tuning.ts).
WORK_S = 0.002


def flaky(payload):
    """Fails about 1 call in 100 (ASYA_PROBER_FAIL_RATE); the sidecar's retries must hide it."""
    time.sleep(WORK_S)
    if random.random() < float(os.environ.get("ASYA_PROBER_FAIL_RATE", "0.01")):
        raise RuntimeError("flaky handler: injected failure")
    return payload


def poison(payload):
    """Always fails: the envelope must end in error-end within the configured attempts."""
    time.sleep(WORK_S)
    raise ValueError("poison: this handler always fails")


def slow(payload):
    """Sleeps payload['sleep'] seconds (default 0.05), so faults land mid-message."""
    time.sleep(float((payload or {}).get("sleep", 0.05)) if isinstance(payload, dict) else 0.05)
    return payload


def maybe_hang(payload):
    """Hangs (far past any timeout) when payload['hang'] is true, else echoes."""
    if isinstance(payload, dict) and payload.get("hang"):
        time.sleep(3600)
    return payload


_failed_once = set()


def fail_once(payload):
    """Fails the first call for each payload['i'] (retryable), then echoes: every envelope waits
    in a retry tier exactly once. State is per runtime process, like a transient outage would be."""
    key = payload.get("i") if isinstance(payload, dict) else None
    if key not in _failed_once:
        _failed_once.add(key)
        raise RuntimeError("fail_once: first attempt fails")
    return payload


# --- instrumentation: how many calls ran at once, and the largest batch (prober_batch_handlers) ---

_stats_lock = threading.Lock()
_stats = {"peak_in_flight": 0, "max_batch": 0}
_in_flight = 0


def _report(key, value):
    """Records a new maximum of `key` and prints it (rare: only when it grows)."""
    with _stats_lock:
        if value <= _stats[key]:
            return
        _stats[key] = value
        sys.stderr.write("asya-prober-stats " + json.dumps({key: value}) + "\n")
        sys.stderr.flush()


def _tracked(fn):
    @functools.wraps(fn)
    def call(payload):
        global _in_flight
        with _stats_lock:
            _in_flight += 1
            now = _in_flight
        _report("peak_in_flight", now)
        try:
            return fn(payload)
        finally:
            with _stats_lock:
                _in_flight -= 1

    return call


# Plain functions only: wrapping an `async def` in a sync function would hide it from the runtime.
for _name, _fn in list(globals().items()):
    if inspect.isfunction(_fn) and _fn.__module__ == __name__ and not _name.startswith("_") and not inspect.iscoroutinefunction(_fn):
        globals()[_name] = _tracked(_fn)
