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


def trace_tag(payload):
    """tag, plus the traceparent the runtime handed this call (asya_runtime.current_trace())."""
    import asya_runtime

    out = tag(payload)
    out["traces"] = list(payload.get("traces", [])) + [asya_runtime.current_trace()]
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


def past_the_end(envelope):
    """Envelope mode, run with ASYA_ENABLE_VALIDATION=false: sets route.current past the end
    (upstream's invalid_route_current_handler); the sidecar sends it to happy-end as it is."""
    envelope["route"]["current"] = len(envelope["route"]["actors"]) + 5
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


def end_summary(payload):
    """An end handler (upstream crew style): a summary when asked for one, else nothing."""
    if isinstance(payload, dict) and payload.get("summarize"):
        return {"summary": f"{len(payload)} fields"}
    return {}


# --- concurrency and batching (test/sidecar/concurrency.test.ts) ---------------------------------

def stamp(payload):
    """Sleeps payload['sleep'] seconds (hangs for payload['hang']); reports when it ran."""
    if payload.get("hang"):
        time.sleep(3600)
    t0 = time.time()
    time.sleep(float(payload.get("sleep", 0.5)))
    return dict(payload, start=t0, end=time.time(), actor=os.environ.get("TEST_ACTOR_NAME", "?"))


async def astamp(payload):
    import asyncio
    t0 = time.time()
    await asyncio.sleep(float(payload.get("sleep", 0.5)))
    return dict(payload, start=t0, end=time.time())


_FAILED_ONCE = set()


def batch_flaky(payloads):
    """Batch handler: each payload learns which envelopes shared its call; 'fail_once' fails the
    first time only (its slot holds the exception, the rest of the batch succeeds)."""
    keys = [p["key"] for p in payloads]
    called = time.time()
    out = []
    for p in payloads:
        if p.get("fail_once") and p["key"] not in _FAILED_ONCE:
            _FAILED_ONCE.add(p["key"])
            out.append(RuntimeError(f"slot {p['key']} failed once"))
        else:
            out.append(dict(p, batch=keys, called=called))
    return out


# --- bench/concurrency.bench.ts ------------------------------------------------------------------

def sleep_100ms(payload):
    """I/O-bound actor: waits 100 ms (an LLM call, say) with the CPU idle."""
    time.sleep(0.1)
    return payload


async def asleep_100ms(payload):
    import asyncio
    await asyncio.sleep(0.1)
    return payload


def gpu_like(payloads):
    """GPU-like batch handler: 20 ms per call + 0.2 ms per item."""
    time.sleep(0.020 + 0.0002 * len(payloads))
    return payloads


def gpu_like_single(payload):
    """The same model unbatched: one call per item, 20.2 ms."""
    time.sleep(0.0202)
    return payload


def echo_batch(payloads):
    return payloads


# --- ordering per envelope at concurrency N (test/sidecar/ordering.test.ts) ----------------------

def fan_stamp(payload):
    """Sleeps payload['sleep'] s, then fans out payload['k'] children naming their parent and index."""
    t0 = time.time()
    time.sleep(float(payload.get("sleep", 0)))
    return [{"parent": payload["key"], "i": i, "start": t0, "end": time.time()} for i in range(int(payload["k"]))]


def batch_fan(payloads):
    """Batch version of fan_stamp: one fan-out per slot, in input order, after one shared sleep."""
    keys = [p["key"] for p in payloads]
    time.sleep(max(float(p.get("sleep", 0)) for p in payloads))
    return [[{"parent": p["key"], "i": i, "batch": keys} for i in range(int(p["k"]))] for p in payloads]


def trail(payload):
    """Sleeps payload['sleep'] s and appends {actor, start, end} of this call to payload['trail']."""
    t0 = time.time()
    time.sleep(float(payload.get("sleep", 0)))
    hop = {"actor": os.environ.get("TEST_ACTOR_NAME", "?"), "start": t0, "end": time.time()}
    return dict(payload, trail=list(payload.get("trail", [])) + [hop])
