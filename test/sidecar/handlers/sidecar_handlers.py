"""Handlers for the sidecar tests (plain Python, like a user's)."""
import os
import time


def echo(payload):
    return payload


def tag(payload):
    """Adds this actor's name to payload['seen'] so tests can follow the hops."""
    seen = list(payload.get("seen", [])) if isinstance(payload, dict) else []
    seen.append(os.environ.get("TEST_ACTOR_NAME", "?"))
    out = dict(payload) if isinstance(payload, dict) else {"value": payload}
    out["seen"] = seen
    return out


def fanout3(payload):
    return [{"part": i, "of": 3, "base": payload} for i in range(3)]


def empty(payload):
    return None


def fail(payload):
    raise RuntimeError("boom: handler failed")


class PermanentError(Exception):
    retryable = False


def fail_permanently(payload):
    raise PermanentError("bad input, retrying will not help")


def slow(payload):
    time.sleep(float(payload.get("sleep", 1.0)))
    return payload


def maybe_hang(payload):
    """Hangs (longer than any test timeout) when payload['hang'] is true."""
    if isinstance(payload, dict) and payload.get("hang"):
        time.sleep(3600)
    return payload


def rewrite(envelope):
    """Envelope mode: inserts payload['insert'] as the next actor, then advances."""
    route = envelope["route"]
    insert = envelope["payload"].get("insert")
    if insert:
        route["actors"].insert(route["current"] + 1, insert)
    route["current"] += 1
    return envelope


def stuck(envelope):
    """Envelope mode: never advances the route (a buggy judge) -> hop limit."""
    return envelope


def crash_once(payload):
    """Kills its own runtime process the first time a given marker file is absent."""
    marker = payload.get("marker")
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), 9)
    return payload


def maybe_fail_end(payload):
    """An end-actor handler (e.g. persisting results) that fails on payload['fail']."""
    if isinstance(payload, dict) and payload.get("fail"):
        raise RuntimeError("could not persist")
    return None


def inflate(payload):
    """Returns a result of payload['bytes'] bytes (to cross transport size limits)."""
    return {"blob": "z" * int(payload["bytes"])}
