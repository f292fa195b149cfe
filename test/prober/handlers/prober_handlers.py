"""Handlers the delivery prober drives. Plain functions, no imports from asya: like a user's code."""
import os
import random
import time


def echo(payload):
    return payload


def flaky(payload):
    """Fails about 1 call in 100 (ASYA_PROBER_FAIL_RATE); the sidecar's retries must hide it."""
    if random.random() < float(os.environ.get("ASYA_PROBER_FAIL_RATE", "0.01")):
        raise RuntimeError("flaky handler: injected failure")
    return payload


def poison(payload):
    """Always fails: the envelope must end in error-end within the configured attempts."""
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
