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
"""

import copy
import datetime
import importlib
import inspect
import json
import os
import signal
import socket
import struct
import sys
import traceback

SOCKET_NAME = "asya-runtime.sock"
READY_NAME = "runtime-ready"
MAX_FRAME_BYTES = 1 << 30  # a length above this is a corrupt frame, not a payload

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}
_log_level = 20


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

    return {
        "handler": handler,
        "mode": mode,
        "validation": validation_raw in ("true", "1", "yes"),
        "socket_dir": (env.get("ASYA_SOCKET_DIR") or "/var/run/asya").strip(),
        "chmod": chmod,
    }


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
    if not isinstance(current, int) or isinstance(current, bool) or current < 0 or current > len(actors):
        raise BadRequest(f'"route.current" must be an integer in [0, {len(actors)}]')
    if "payload" not in env:
        raise BadRequest('envelope needs a "payload" (it may be null)')


def as_results(value):
    """None / [] / () -> no results; list/tuple -> fan-out; anything else -> one result."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def run_payload_mode(fn, env):
    route = env["route"]
    out = []
    for r in as_results(fn(env["payload"])):
        res = {k: v for k, v in env.items() if k not in ("payload", "route")}
        res["route"] = dict(route)
        res["route"]["current"] = route.get("current", 0) + 1
        res["payload"] = r
        out.append(res)
    return out


def run_envelope_mode(fn, env, validation):
    before = copy.deepcopy(env["route"])  # handlers mutate in place: compare against a copy (SPEC §11.15)
    out = []
    for r in as_results(fn(env)):
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


def handle_request(fn, mode, validation, body):
    try:
        env = json.loads(body.decode("utf-8"))
        validate_envelope(env)
    except (UnicodeDecodeError, ValueError, RecursionError, BadRequest) as exc:
        return error_item("msg_parsing_error", exc, tb="")
    try:
        if mode == "payload":
            return run_payload_mode(fn, env)
        return run_envelope_mode(fn, env, validation)
    except Exception as exc:  # the handler's failure is data for the sidecar, never a crash
        return error_item("processing_error", exc)


def encode_response(items):
    try:
        data = json.dumps(items, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        data = json.dumps(error_item("processing_error", exc, message=f"handler result is not JSON-serialisable: {exc}")).encode("utf-8")
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


def serve_connection(conn, fn, mode, validation):
    try:
        header = recv_exact(conn, 4)
        (length,) = struct.unpack(">I", header)
        if length == 0:
            response = error_item("msg_parsing_error", message="empty frame (length 0)", tb="")
        elif length > MAX_FRAME_BYTES:
            response = error_item("msg_parsing_error", message=f"frame length {length} exceeds {MAX_FRAME_BYTES}", tb="")
        else:
            response = handle_request(fn, mode, validation, recv_exact(conn, length))
    except (ConnectionError, OSError) as exc:
        log("WARNING", "connection broke while reading a request", error=str(exc))
        response = error_item("connection_error", exc, tb="")
    try:
        conn.sendall(encode_response(response))
    except OSError as exc:
        log("WARNING", "could not send the response", error=str(exc))


# --------------------------------------------------------------------------- server


class Server:
    def __init__(self, cfg, fn):
        self.cfg = cfg
        self.fn = fn
        self.stopping = False
        self.sock_path = os.path.join(cfg["socket_dir"], SOCKET_NAME)
        self.ready_path = os.path.join(cfg["socket_dir"], READY_NAME)
        self.sock = None

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
        self.sock.listen(64)
        self.sock.settimeout(0.2)  # lets SIGTERM be noticed while idle
        tmp = self.ready_path + ".tmp"
        with open(tmp, "w") as f:
            f.write("ready")
        os.replace(tmp, self.ready_path)
        log("INFO", "runtime ready", handler=self.cfg["handler"], mode=self.cfg["mode"], socket=self.sock_path)

    def serve(self):
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
            with conn:
                conn.settimeout(None)
                serve_connection(conn, self.fn, self.cfg["mode"], self.cfg["validation"])

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
        # Finish the in-flight request, then leave (the serve loop checks the flag).
        server.stopping = True
        log("INFO", "signal received; finishing the in-flight request", signal=signum)

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
