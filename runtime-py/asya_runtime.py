#!/usr/bin/env python3
"""Asya runtime: loads the user's handler and serves it on a Unix socket (SPEC §4).

Standard library only, Python >= 3.10. Mounted into the user's container at
/opt/asya/asya_runtime.py and run as ``python3 /opt/asya/asya_runtime.py``.

Protocol: one request per connection; a frame is a 4-byte big-endian length followed by UTF-8
JSON, both ways. The request is the envelope; the response is always a JSON array: results,
``[]``, or ``[{"error": code, "details": {...}}]`` with code processing_error, msg_parsing_error
or connection_error.

Environment:
  ASYA_HANDLER            module.function or module.Class.method (required)
  ASYA_HANDLER_MODE       payload (default) or envelope
  ASYA_ENABLE_VALIDATION  true (default) / false: envelope-mode route validation
  ASYA_SOCKET_DIR         /var/run/asya (default): asya-runtime.sock and runtime-ready live here
  ASYA_SOCKET_CHMOD       octal mode of the socket, default 0o666; empty = leave as created
  ASYA_LOG_LEVEL          DEBUG, INFO (default), WARNING, ERROR
  ASYA_CONCURRENCY        handler calls served at once, 1 (default) .. 1000 (SPEC §13): sync
                          handlers run in a thread pool of that size, ``async def`` handlers on one
                          asyncio loop (async handlers work at any concurrency, 1 included)
  ASYA_BATCH_SIZE         1 (default) .. 1000; above 1 the handler is a batch handler: it gets a
                          list of payloads (or envelopes) and returns one result per input, in order
  ASYA_BATCH_WAIT         the sidecar's batch-gathering wait (validated here, used by the sidecar)

Batch frame (SPEC §13, only between our sidecar and this runtime): ``{"batch": [envelope, ...]}``
is answered by ``{"batch": [response, ...]}``, each response exactly the array above for that
envelope.
"""

import asyncio
import concurrent.futures
import contextvars
import copy
import datetime
import importlib
import inspect
import json
import os
import re
import signal
import socket
import struct
import sys
import traceback

SOCKET_NAME = "asya-runtime.sock"
READY_NAME = "runtime-ready"
MAX_FRAME_BYTES = 1 << 30  # a length above this is a corrupt frame, not a payload
MAX_CONCURRENCY = 1000
MAX_BATCH_SIZE = 1000
MAX_BATCH_WAIT_MS = 60_000
_DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}
_log_level = 20


_trace = contextvars.ContextVar("asya_trace", default=None)


def current_trace():
    """The W3C ``traceparent`` of the envelope this handler call is processing, or None.

    A handler passes it on to what it calls (an LLM or HTTP API: the ``traceparent`` request
    header) so those calls join the pipeline's trace. Safe at any ASYA_CONCURRENCY (it follows the
    call, thread or asyncio task). For a batch handler (ASYA_BATCH_SIZE > 1) it is a list, one
    entry (a string or None) per input, in order. With ASYA_CONCURRENCY=1 and a sync handler the
    same values are also in ``os.environ`` as ``TRACEPARENT`` / ``TRACESTATE`` during the call
    (the OpenTelemetry environment carrier), for subprocesses and libraries that read them.
    """
    value = _trace.get()
    if isinstance(value, list):
        return [v[0] if v else None for v in value]
    return value[0] if value else None


def trace_of(env):
    """(traceparent, tracestate-or-None) from an envelope's headers, or None."""
    headers = env.get("headers") if isinstance(env, dict) else None
    if not isinstance(headers, dict):
        return None
    tp = headers.get("traceparent")
    if not isinstance(tp, str) or not tp:
        return None
    ts = headers.get("tracestate")
    return (tp, ts if isinstance(ts, str) and ts else None)


class NonRetryableError(Exception):
    """Raise (or subclass) this when retrying cannot help: the sidecar skips its retries.

    Any exception with a class or instance attribute ``retryable = False`` has the same effect.
    """

    retryable = False


class ConfigError(Exception):
    def __init__(self, variable, message):
        super().__init__(message)
        self.variable = variable


def log(level, msg, **fields):
    if _LEVELS.get(level, 20) < _log_level:
        return
    rec = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "level": level.lower(),
        "component": "asya-runtime",
        "msg": msg,
    }
    rec.update(fields)
    try:
        sys.stderr.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
        sys.stderr.flush()
    except Exception:  # logging must never take the runtime down
        pass


# --------------------------------------------------------------------------- configuration


def read_config(env):
    global _log_level
    level = (env.get("ASYA_LOG_LEVEL") or "INFO").strip().upper()
    if level not in _LEVELS:
        raise ConfigError("ASYA_LOG_LEVEL", f"ASYA_LOG_LEVEL={level!r} is invalid: expected DEBUG, INFO, WARNING or ERROR")
    _log_level = _LEVELS[level]

    handler = (env.get("ASYA_HANDLER") or "").strip()
    if not handler:
        raise ConfigError("ASYA_HANDLER", "ASYA_HANDLER is required: module.function or module.Class.method")
    parts = handler.split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        raise ConfigError("ASYA_HANDLER", f"ASYA_HANDLER={handler!r} is invalid: expected module.function or module.Class.method")

    mode = (env.get("ASYA_HANDLER_MODE") or "payload").strip().lower()
    if mode not in ("payload", "envelope"):
        raise ConfigError("ASYA_HANDLER_MODE", f"ASYA_HANDLER_MODE={mode!r} is invalid: expected payload or envelope")

    validation_raw = (env.get("ASYA_ENABLE_VALIDATION") or "true").strip().lower()
    if validation_raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError("ASYA_ENABLE_VALIDATION", f"ASYA_ENABLE_VALIDATION={validation_raw!r} is invalid: expected true or false")

    chmod_raw = env.get("ASYA_SOCKET_CHMOD")
    chmod = 0o666
    if chmod_raw is not None:
        chmod_raw = chmod_raw.strip()
        if chmod_raw == "":
            chmod = None
        else:
            try:
                text = chmod_raw[2:] if chmod_raw.lower().startswith("0o") else chmod_raw
                chmod = int(text, 8)
                if not 0 <= chmod <= 0o7777:
                    raise ValueError
            except ValueError:
                raise ConfigError("ASYA_SOCKET_CHMOD", f"ASYA_SOCKET_CHMOD={chmod_raw!r} is invalid: expected an octal mode such as 0o666 or 660")

    concurrency = read_int(env, "ASYA_CONCURRENCY", 1, 1, MAX_CONCURRENCY)
    batch_size = read_int(env, "ASYA_BATCH_SIZE", 1, 1, MAX_BATCH_SIZE)
    batch_wait_raw = (env.get("ASYA_BATCH_WAIT") or "").strip()
    if batch_wait_raw:
        ms = parse_duration_ms(batch_wait_raw)
        if ms is None or ms > MAX_BATCH_WAIT_MS:
            raise ConfigError("ASYA_BATCH_WAIT", f"ASYA_BATCH_WAIT={batch_wait_raw!r} is invalid: expected a duration from 0ms to 60s, such as 20ms")

    return {
        "handler": handler,
        "mode": mode,
        "validation": validation_raw in ("true", "1", "yes"),
        "socket_dir": (env.get("ASYA_SOCKET_DIR") or "/var/run/asya").strip(),
        "chmod": chmod,
        "concurrency": concurrency,
        "batch_size": batch_size,
    }


def read_int(env, name, default, lo, hi):
    raw = (env.get(name) or "").strip()
    if raw == "":
        return default
    if not re.fullmatch(r"[0-9]+", raw) or not lo <= int(raw) <= hi:
        raise ConfigError(name, f"{name}={raw!r} is invalid: expected an integer from {lo} to {hi}")
    return int(raw)


def parse_duration_ms(text):
    """Go-style durations (20ms, 1.5s, 1m30s) or a bare number of seconds, as the sidecar reads them."""
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(text) * 1000
    if not re.fullmatch(r"([0-9]+(\.[0-9]+)?(ms|s|m|h))+", text):
        return None
    return sum(float(n) * _DURATION_UNITS_MS[u] for n, u in re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", text))


def load_handler(spec):
    """Resolves module.function or module.Class.method; a class is built once, here."""
    parts = spec.split(".")
    module = None
    # The longest importable prefix is the module (packages: pkg.mod.func).
    for i in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:i])
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                continue  # this prefix is not a module; try a shorter one
            raise  # the module exists but one of its own imports is missing
        rest = parts[i:]
        break
    if module is None:
        raise ConfigError("ASYA_HANDLER", f"ASYA_HANDLER={spec!r}: module {parts[0]!r} cannot be imported (check PYTHONPATH and the working directory)")

    obj = module
    for j, attr in enumerate(rest):
        if not hasattr(obj, attr):
            raise ConfigError("ASYA_HANDLER", f"ASYA_HANDLER={spec!r}: {'.'.join(parts[: len(parts) - len(rest) + j])} has no attribute {attr!r}")
        nxt = getattr(obj, attr)
        if inspect.isclass(nxt) and j < len(rest) - 1:
            nxt = instantiate(nxt, spec)
        obj = nxt
    if inspect.isclass(obj):
        raise ConfigError("ASYA_HANDLER", f"ASYA_HANDLER={spec!r} names a class: add the method, e.g. {spec}.process")
    if not callable(obj):
        raise ConfigError("ASYA_HANDLER", f"ASYA_HANDLER={spec!r} is not callable")
    return obj


def instantiate(cls, spec):
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        missing = [
            p.name
            for p in list(sig.parameters.values())[1:]
            if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if missing:
            raise ConfigError(
                "ASYA_HANDLER",
                f"ASYA_HANDLER={spec!r}: class {cls.__name__} is built once with no arguments, "
                f"but __init__ parameters {', '.join(missing)} have no default",
            )
    return cls()


# --------------------------------------------------------------------------- request handling


class BadRequest(Exception):
    """The request is not a valid envelope: msg_parsing_error."""


class HandlerOutputError(Exception):
    """The handler returned something that is not a valid result: processing_error."""


def error_item(code, exc=None, message=None, tb=None):
    details = {
        "message": message if message is not None else (str(exc) if exc is not None else code),
        "type": type(exc).__name__ if exc is not None else code,
        "traceback": tb if tb is not None else ("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) if exc is not None else ""),
    }
    if exc is not None and not is_retryable(exc):
        details["retryable"] = False
    return [{"error": code, "details": details}]


def is_retryable(exc):
    if getattr(exc, "retryable", True) is False:
        return False
    # The user may import asya_runtime as a module while we run as __main__: match by name too.
    return not any(c.__name__ == "NonRetryableError" for c in type(exc).__mro__)


def validate_envelope(env):
    if not isinstance(env, dict):
        raise BadRequest("envelope must be a JSON object")
    route = env.get("route")
    if not isinstance(route, dict):
        raise BadRequest('envelope needs a "route" object')
    actors = route.get("actors")
    if not isinstance(actors, list) or not all(isinstance(a, str) for a in actors):
        raise BadRequest('"route.actors" must be a list of strings')
    current = route.get("current", 0)
    # No upper bound: an index at or past the end means the route is done (SPEC §2); such an envelope
    # reaches happy-end as it is, and an end handler must still get it.
    if not isinstance(current, int) or isinstance(current, bool) or current < 0:
        raise BadRequest('"route.current" must be an integer >= 0')
    if "payload" not in env:
        raise BadRequest('envelope needs a "payload" (it may be null)')


def as_results(value):
    """None / [] / () -> no results; list/tuple -> fan-out; anything else -> one result."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def is_async_handler(fn):
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # an object whose __call__ is async def
    return call is not None and not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


class Handler:
    """The loaded handler and how to call it: payload or envelope mode, single or batch."""

    def __init__(self, fn, cfg):
        self.fn = fn
        self.envelope_mode = cfg["mode"] == "envelope"
        self.validation = cfg["validation"]
        self.batch_size = cfg.get("batch_size", 1)
        self.is_async = is_async_handler(fn)
        # os.environ is process-wide: only a handler that runs one call at a time may see it change.
        self.trace_in_environ = not self.is_async and cfg.get("concurrency", 1) == 1

    def arg(self, env):
        return env if self.envelope_mode else env["payload"]

    def before(self, env):
        # Handlers mutate the envelope in place: validate against a copy taken first (SPEC §11.15).
        return copy.deepcopy(env["route"]) if self.envelope_mode else None

    def finish(self, env, before, outcome):
        """One envelope's response array from the handler's (ok, value-or-exception)."""
        ok, value = outcome
        if not ok:
            return error_item("processing_error", value)
        try:
            if self.envelope_mode:
                return shape_envelope_results(env, before, value, self.validation)
            return shape_payload_results(env, value)
        except Exception as exc:
            return error_item("processing_error", exc)

    def split(self, outcome, n):
        """A batch call's outcome as one (ok, value) per input; a wrong shape fails every input."""
        ok, value = outcome
        if not ok:
            return [(False, value)] * n  # the batch raised: every envelope fails, each retried on its own
        if not isinstance(value, (list, tuple)) or len(value) != n:
            got = f"a {type(value).__name__} of length {len(value)}" if isinstance(value, (list, tuple)) else type(value).__name__
            err = HandlerOutputError(f"batch handler returned {got}; expected a list of {n} results, one per input in order")
            return [(False, err)] * n
        return [(False, v) if isinstance(v, BaseException) else (True, v) for v in value]


def shape_payload_results(env, value):
    route = env["route"]
    out = []
    for r in as_results(value):
        res = {k: v for k, v in env.items() if k not in ("payload", "route")}
        res["route"] = dict(route)
        res["route"]["current"] = route.get("current", 0) + 1
        res["payload"] = r
        out.append(res)
    return out


def shape_envelope_results(env, before, value, validation):
    out = []
    for r in as_results(value):
        if not isinstance(r, dict):
            raise HandlerOutputError(f"envelope-mode handler returned {type(r).__name__}, expected an envelope dict")
        if validation:
            check_route(before, r.get("route"))
        if "payload" not in r:
            raise HandlerOutputError('envelope-mode result has no "payload"')
        res = dict(r)
        res.setdefault("id", env.get("id"))
        if "headers" not in res and "headers" in env:
            res["headers"] = env["headers"]
        if env.get("parent_id") is not None:
            res.setdefault("parent_id", env["parent_id"])
        out.append(res)
    return out


def check_route(before, after):
    if not isinstance(after, dict) or not isinstance(after.get("actors"), list):
        raise HandlerOutputError('result "route" must be an object with an "actors" list')
    cur_before = before.get("current", 0)
    processed = before["actors"][: cur_before + 1]
    actors = after["actors"]
    if actors[: len(processed)] != processed:
        raise HandlerOutputError(
            f"route rewrite changed actors that already ran: {processed} became {actors[: len(processed)]}; only future actors may change"
        )
    cur = after.get("current")
    if not isinstance(cur, int) or isinstance(cur, bool) or cur < cur_before or cur > len(actors):
        raise HandlerOutputError(f'result "route.current" must be an integer in [{cur_before}, {len(actors)}], got {cur!r}')


def parse_request(body):
    """-> (slots, is_batch): each slot an envelope or the BadRequest that rejects it."""
    value = json.loads(body.decode("utf-8"))
    if isinstance(value, dict) and len(value) == 1 and "batch" in value:
        items = value["batch"]
        if not isinstance(items, list):
            raise BadRequest('"batch" must be a list of envelopes')
        slots = []
        for item in items:
            try:
                validate_envelope(item)
                slots.append(item)
            except BadRequest as exc:
                slots.append(exc)
        return slots, True
    validate_envelope(value)
    return [value], False


def plan(h, body):
    """One request, written once for both drivers: yields each handler argument, is sent back
    (True, result) or (False, exception), and returns the response frame."""
    try:
        slots, is_batch = parse_request(body)
    except (UnicodeDecodeError, ValueError, RecursionError, BadRequest) as exc:
        return encode_response(error_item("msg_parsing_error", exc, tb=""))
    responses = [error_item("msg_parsing_error", s, tb="") if isinstance(s, BadRequest) else None for s in slots]
    live = [i for i, s in enumerate(slots) if not isinstance(s, BadRequest)]
    if h.batch_size > 1:
        # A batch handler always gets a list, even for a single envelope.
        if live:
            envs = [slots[i] for i in live]
            befores = [h.before(e) for e in envs]
            token = _trace.set([trace_of(e) for e in envs])
            try:
                outcome = yield [h.arg(e) for e in envs]
            finally:
                _trace.reset(token)
            for i, e, b, o in zip(live, envs, befores, h.split(outcome, len(envs))):
                responses[i] = h.finish(e, b, o)
    else:
        for i in live:  # a batch frame to a single-call handler: one call per envelope, in order
            e = slots[i]
            b = h.before(e)
            token = _trace.set(trace_of(e))
            try:
                outcome = yield h.arg(e)
            finally:
                _trace.reset(token)
            responses[i] = h.finish(e, b, outcome)
    if is_batch:
        return encode_batch(responses)
    return encode_response(responses[0])


def run_sync(h, body):
    g = plan(h, body)
    try:
        arg = next(g)
        while True:
            try:
                outcome = (True, call_with_trace_environ(h, arg) if h.trace_in_environ else h.fn(arg))
            except Exception as exc:  # the handler's failure is data for the sidecar, never a crash
                outcome = (False, exc)
            arg = g.send(outcome)
    except StopIteration as stop:
        return stop.value


_TRACE_ENV = ("TRACEPARENT", "TRACESTATE")


def call_with_trace_environ(h, arg):
    value = _trace.get()
    if isinstance(value, list):  # a batch: the environment can hold one trace, the first input's
        value = next((v for v in value if v), None)
    saved = {k: os.environ.get(k) for k in _TRACE_ENV}
    for k, v in zip(_TRACE_ENV, value or (None, None)):
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        return h.fn(arg)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def run_async(h, body):
    g = plan(h, body)
    try:
        arg = next(g)
        while True:
            try:
                value = h.fn(arg)
                if inspect.isawaitable(value):
                    value = await value
                outcome = (True, value)
            except (Exception, asyncio.CancelledError) as exc:
                outcome = (False, exc)
            arg = g.send(outcome)
    except StopIteration as stop:
        return stop.value


def handle_request(h, body):
    """Response frame (length prefix included) for one request body, sync handlers."""
    return run_sync(h, body)


def dumps_items(items):
    try:
        return json.dumps(items, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        return json.dumps(error_item("processing_error", exc, message=f"handler result is not JSON-serialisable: {exc}")).encode("utf-8")


def encode_response(items):
    data = dumps_items(items)
    return struct.pack(">I", len(data)) + data


def encode_batch(responses):
    # Each slot serialised on its own: one unserialisable result fails that envelope alone.
    data = b'{"batch":[' + b",".join(dumps_items(r) for r in responses) + b"]}"
    return struct.pack(">I", len(data)) + data


def recv_exact(conn, n):
    chunks = []
    remaining = n
    while remaining > 0:
        chunk = conn.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ConnectionError(f"peer closed the connection with {remaining} of {n} bytes unread")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def frame_problem(length):
    if length == 0:
        return encode_response(error_item("msg_parsing_error", message="empty frame (length 0)", tb=""))
    if length > MAX_FRAME_BYTES:
        return encode_response(error_item("msg_parsing_error", message=f"frame length {length} exceeds {MAX_FRAME_BYTES}", tb=""))
    return None


def serve_connection(conn, h):
    try:
        (length,) = struct.unpack(">I", recv_exact(conn, 4))
        data = frame_problem(length) or handle_request(h, recv_exact(conn, length))
    except (ConnectionError, OSError) as exc:
        log("WARNING", "connection broke while reading a request", error=str(exc))
        data = encode_response(error_item("connection_error", exc, tb=""))
    try:
        conn.sendall(data)
    except OSError as exc:
        log("WARNING", "could not send the response", error=str(exc))


# --------------------------------------------------------------------------- server


class Server:
    """Serial accept loop for one sync handler at a time (the upstream shape, and the fastest for
    it); for a sync handler at ASYA_CONCURRENCY > 1 the same loop hands each connection to one of N
    threads that reads, calls and answers it (one thread per call end to end: no hop through an
    event loop); an asyncio server when the handler is async."""

    def __init__(self, cfg, fn):
        self.cfg = cfg
        self.handler = Handler(fn, cfg)
        self.stopping = False
        self.sock_path = os.path.join(cfg["socket_dir"], SOCKET_NAME)
        self.ready_path = os.path.join(cfg["socket_dir"], READY_NAME)
        self.sock = None
        self.concurrency = cfg.get("concurrency", 1)
        self.uses_loop = self.handler.is_async
        self._stop_event = None
        self._loop = None

    def cleanup(self):
        for p in (self.ready_path, self.sock_path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log("WARNING", "could not remove file", path=p, error=str(exc))

    def start(self):
        os.makedirs(self.cfg["socket_dir"], exist_ok=True)
        # A crashed predecessor may have left both behind; probes must not believe them (SPEC §11.13).
        self.cleanup()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.sock_path)
        if self.cfg["chmod"] is not None:
            os.chmod(self.sock_path, self.cfg["chmod"])
        self.sock.listen(max(64, 2 * self.concurrency))
        self.sock.settimeout(0.2)  # lets SIGTERM be noticed while idle
        tmp = self.ready_path + ".tmp"
        with open(tmp, "w") as f:
            f.write("ready")
        os.replace(tmp, self.ready_path)
        log("INFO", "runtime ready", handler=self.cfg["handler"], mode=self.cfg["mode"], socket=self.sock_path,
            concurrency=self.concurrency, batch_size=self.handler.batch_size, handler_kind="async" if self.handler.is_async else "sync")

    def request_stop(self):
        """Signal-safe: stop accepting, finish what is in flight (the serve loop checks the flag)."""
        self.stopping = True
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)

    def serve(self):
        if self.uses_loop:
            asyncio.run(self.serve_async())
            return
        # Sync handlers: N threads, each serving a whole connection; accepted connections beyond N
        # wait for a free thread. On SIGTERM every accepted connection is still answered.
        pool = None
        if self.concurrency > 1:
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="asya-handler")
        try:
            self.accept_loop(pool)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def serve_one(self, conn):
        with conn:
            try:
                serve_connection(conn, self.handler)
            except Exception as exc:  # a thread of the pool: say so instead of losing it in a future
                log("ERROR", "serving a connection failed", error=f"{type(exc).__name__}: {exc}")

    def accept_loop(self, pool):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except InterruptedError:
                continue
            except OSError as exc:
                if self.stopping:
                    break
                log("ERROR", "accept failed", error=str(exc))
                continue
            conn.settimeout(None)
            if pool is None:
                self.serve_one(conn)
            else:
                pool.submit(self.serve_one, conn)

    async def serve_async(self):
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop_event = asyncio.Event()
        if self.stopping:
            self._stop_event.set()
        # Async handlers run on this loop, N at a time.
        slots = asyncio.Semaphore(self.concurrency)
        tasks = set()

        async def on_connection(reader, writer):
            tasks.add(asyncio.current_task())
            try:
                try:
                    (length,) = struct.unpack(">I", await reader.readexactly(4))
                    data = frame_problem(length)
                    if data is None:
                        body = await reader.readexactly(length)
                        async with slots:
                            data = await run_async(self.handler, body)
                except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
                    log("WARNING", "connection broke while reading a request", error=str(exc))
                    data = encode_response(error_item("connection_error", exc, tb=""))
                try:
                    writer.write(data)
                    await writer.drain()
                except (ConnectionError, OSError) as exc:
                    log("WARNING", "could not send the response", error=str(exc))
                finally:
                    writer.close()
            finally:
                tasks.discard(asyncio.current_task())

        self.sock.setblocking(False)
        server = await asyncio.start_unix_server(on_connection, sock=self.sock)
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            # Accepted connections whose task has not run yet register on the next iterations.
            for _ in range(3):
                await asyncio.sleep(0)
            while tasks:
                await asyncio.gather(*list(tasks), return_exceptions=True)
            self._loop = None

    def shutdown(self):
        try:
            if self.sock is not None:
                self.sock.close()
        finally:
            self.cleanup()
        log("INFO", "runtime stopped")


def main():
    # A handler that does `from asya_runtime import NonRetryableError` gets this very module.
    sys.modules.setdefault("asya_runtime", sys.modules[__name__])
    try:
        cfg = read_config(os.environ)
    except ConfigError as exc:
        log("ERROR", str(exc), variable=exc.variable, code="ASYA_ERR_CONFIG_INVALID")
        return 1
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        fn = load_handler(cfg["handler"])
    except ConfigError as exc:
        log("ERROR", str(exc), variable=exc.variable, code="ASYA_ERR_CONFIG_INVALID")
        return 1
    except Exception as exc:
        log("ERROR", f"loading ASYA_HANDLER={cfg['handler']!r} failed: {type(exc).__name__}: {exc}", variable="ASYA_HANDLER",
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return 1

    server = Server(cfg, fn)

    def on_term(signum, _frame):
        # Finish the in-flight requests, then leave.
        log("INFO", "signal received; finishing the in-flight requests", signal=signum)
        server.request_stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        server.start()
    except OSError as exc:
        log("ERROR", f"cannot listen on {server.sock_path}: {exc}", variable="ASYA_SOCKET_DIR")
        server.cleanup()
        return 1
    try:
        server.serve()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
