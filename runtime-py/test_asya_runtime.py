"""Tests of asya_runtime.py through a real socket, with real handler modules (standard library only)."""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
RUNTIME = os.path.join(HERE, "asya_runtime.py")

HANDLERS = textwrap.dedent(
    '''
    import time
    from asya_runtime import NonRetryableError

    def echo(payload):
        return payload

    def double(payload):
        return {"n": payload["n"] * 2}

    def fanout(payload):
        return [{"i": i} for i in range(payload.get("n", 3))]

    def tuple_fanout(payload):
        return ({"a": 1}, {"b": 2})

    def none(payload):
        return None

    def empty_list(payload):
        return []

    def empty_tuple(payload):
        return ()

    def scalar(payload):
        return 42

    def boom(payload):
        raise ValueError("boom")

    class Permanent(NonRetryableError):
        pass

    def permanent(payload):
        raise Permanent("never works")

    class Flagged(Exception):
        retryable = False

    def flagged(payload):
        raise Flagged("flagged")

    def slow(payload):
        time.sleep(payload.get("sleep", 0.5))
        return {"slept": True}

    def not_json(payload):
        return {"s": {1, 2}}

    class Model:
        built = 0

        def __init__(self, scale=3):
            Model.built += 1
            self.scale = scale

        def predict(self, payload):
            return {"y": payload["x"] * self.scale, "built": Model.built}

    class NeedsArg:
        def __init__(self, path):
            self.path = path

        def run(self, payload):
            return payload

    def rewrite(envelope):
        r = envelope["route"]
        r["actors"].insert(r["current"] + 1, "inserted")
        r["current"] += 1
        return envelope

    def erase_processed(envelope):
        r = envelope["route"]
        r["actors"][0] = "renamed"
        r["current"] += 1
        return envelope

    def past_the_end(envelope):
        envelope["route"]["current"] = len(envelope["route"]["actors"]) + 5
        return envelope

    import asyncio
    import threading

    def stamp(payload):
        t0 = time.time()
        time.sleep(payload.get("sleep", 0.3))
        return {"start": t0, "end": time.time(), "thread": threading.get_ident()}

    async def astamp(payload):
        t0 = time.time()
        await asyncio.sleep(payload.get("sleep", 0.3))
        return {"start": t0, "end": time.time(), "thread": threading.get_ident()}

    async def aboom(payload):
        await asyncio.sleep(0)
        raise ValueError("aboom")

    async def apermanent(payload):
        raise Permanent("async never works")

    async def aerase_processed(envelope):
        await asyncio.sleep(0)
        envelope["route"]["actors"][0] = "renamed"
        envelope["route"]["current"] += 1
        return envelope

    async def arewrite(envelope):
        await asyncio.sleep(0)
        r = envelope["route"]
        r["actors"].insert(r["current"] + 1, "inserted")
        r["current"] += 1
        return envelope

    async def afanout(payload):
        return [{"i": i} for i in range(payload.get("n", 2))]

    class AsyncModel:
        def __init__(self, scale=5):
            self.scale = scale

        async def predict(self, payload):
            await asyncio.sleep(payload.get("sleep", 0))
            return {"y": payload["x"] * self.scale}

    BATCH_CALLS = []

    def batch_double(payloads):
        BATCH_CALLS.append(len(payloads))
        return [{"n": p["n"] * 2, "batch": len(payloads)} for p in payloads]

    async def abatch_double(payloads):
        await asyncio.sleep(0)
        return [{"n": p["n"] * 2, "batch": len(payloads)} for p in payloads]

    def batch_mixed(payloads):
        out = []
        for p in payloads:
            kind = p.get("kind")
            if kind == "fail":
                out.append(ValueError(f"slot {p['n']} failed"))
            elif kind == "permanent":
                out.append(Permanent("slot is permanent"))
            elif kind == "fanout":
                out.append([{"i": i} for i in range(p["n"])])
            elif kind == "none":
                out.append(None)
            elif kind == "empty":
                out.append([])
            elif kind == "set":
                out.append({"s": {1}})
            else:
                out.append({"n": p["n"]})
        return out

    def batch_short(payloads):
        return [{"ok": True}] * (len(payloads) - 1)

    def batch_dict(payloads):
        return {"not": "a list"}

    def batch_raises(payloads):
        raise RuntimeError("the GPU fell over")

    def batch_envelopes(envelopes):
        out = []
        for e in envelopes:
            r = e["route"]
            if e["payload"].get("erase"):
                r["actors"][0] = "renamed"
            else:
                r["actors"].insert(r["current"] + 1, "added")
            r["current"] += 1
            out.append(e)
        return out

    def batch_stamp(payloads):
        t0 = time.time()
        time.sleep(0.3)
        return [{"start": t0, "end": time.time()} for _ in payloads]

    import asya_runtime
    import os

    def trace(payload):
        time.sleep(payload.get("sleep", 0))
        return {"trace": asya_runtime.current_trace(), "environ": os.environ.get("TRACEPARENT"), "state": os.environ.get("TRACESTATE")}

    async def atrace(payload):
        await asyncio.sleep(payload.get("sleep", 0))
        return {"trace": asya_runtime.current_trace(), "environ": os.environ.get("TRACEPARENT")}

    def batch_trace(payloads):
        return [{"trace": asya_runtime.current_trace()} for _ in payloads]

    def env_fanout(envelope):
        out = []
        for i in range(2):
            e = dict(envelope)
            e["route"] = dict(envelope["route"], current=envelope["route"]["current"] + 1)
            e["payload"] = {"i": i}
            out.append(e)
        return out
    '''
)


def frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


class RuntimeProc:
    def __init__(self, handler, mode="payload", extra_env=None):
        self.dir = tempfile.mkdtemp(prefix="asya-rt-test-")
        self.mod_dir = tempfile.mkdtemp(prefix="asya-rt-mod-")
        with open(os.path.join(self.mod_dir, "handlers.py"), "w") as f:
            f.write(HANDLERS)
        env = dict(os.environ)
        env.update({
            "ASYA_HANDLER": handler,
            "ASYA_HANDLER_MODE": mode,
            "ASYA_SOCKET_DIR": self.dir,
            "PYTHONPATH": self.mod_dir + os.pathsep + HERE,
        })
        env.update(extra_env or {})
        self.proc = subprocess.Popen([sys.executable, RUNTIME], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        self.sock = os.path.join(self.dir, "asya-runtime.sock")
        self.ready = os.path.join(self.dir, "runtime-ready")

    def wait_ready(self, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            if os.path.exists(self.ready):
                return
            if self.proc.poll() is not None:
                raise RuntimeError("runtime exited: " + self.proc.stderr.read().decode())
            time.sleep(0.02)
        raise RuntimeError("runtime not ready")

    def raw(self, data: bytes):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.sock)
        try:
            s.sendall(data)
            (n,) = struct.unpack(">I", recv_exact(s, 4))
            return json.loads(recv_exact(s, n).decode("utf-8"))
        finally:
            s.close()

    def call(self, envelope):
        return self.raw(frame(json.dumps(envelope).encode("utf-8")))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.mod_dir, ignore_errors=True)


def env(payload, actors=("a", "b"), current=0, **extra):
    e = {"id": "e1", "route": {"actors": list(actors), "current": current}, "payload": payload}
    e.update(extra)
    return e


class PayloadModeTest(unittest.TestCase):
    def run_with(self, handler, envelope, mode="payload"):
        rt = RuntimeProc("handlers." + handler, mode)
        try:
            rt.wait_ready()
            return rt.call(envelope)
        finally:
            rt.stop()

    def test_single_result_advances_current_and_keeps_fields(self):
        out = self.run_with("double", env({"n": 21}, headers={"trace": "t"}, parent_id="p0", future_field=[1]))
        self.assertEqual(out, [{"id": "e1", "headers": {"trace": "t"}, "parent_id": "p0", "future_field": [1],
                                "route": {"actors": ["a", "b"], "current": 1}, "payload": {"n": 42}}])

    def test_fanout_list_and_tuple(self):
        out = self.run_with("fanout", env({"n": 3}))
        self.assertEqual([r["payload"] for r in out], [{"i": 0}, {"i": 1}, {"i": 2}])
        self.assertTrue(all(r["route"]["current"] == 1 for r in out))
        out = self.run_with("tuple_fanout", env({}))
        self.assertEqual(len(out), 2)

    def test_none_empty_list_empty_tuple_give_empty_array(self):
        for h in ("none", "empty_list", "empty_tuple"):
            self.assertEqual(self.run_with(h, env({})), [], h)

    def test_scalar_result(self):
        self.assertEqual(self.run_with("scalar", env(None))[0]["payload"], 42)

    def test_handler_error_has_message_type_traceback(self):
        out = self.run_with("boom", env({}))
        self.assertEqual(out[0]["error"], "processing_error")
        d = out[0]["details"]
        self.assertEqual(d["message"], "boom")
        self.assertEqual(d["type"], "ValueError")
        self.assertIn("Traceback", d["traceback"])
        self.assertNotIn("retryable", d)

    def test_non_retryable(self):
        for h in ("permanent", "flagged"):
            out = self.run_with(h, env({}))
            self.assertEqual(out[0]["details"]["retryable"], False, h)

    def test_unserialisable_result_is_processing_error(self):
        out = self.run_with("not_json", env({}))
        self.assertEqual(out[0]["error"], "processing_error")

    def test_class_method_built_once(self):
        rt = RuntimeProc("handlers.Model.predict")
        try:
            rt.wait_ready()
            self.assertEqual(rt.call(env({"x": 2}))[0]["payload"], {"y": 6, "built": 1})
            self.assertEqual(rt.call(env({"x": 3}))[0]["payload"], {"y": 9, "built": 1})
        finally:
            rt.stop()


class EnvelopeModeTest(unittest.TestCase):
    def run_with(self, handler, envelope, extra_env=None):
        rt = RuntimeProc("handlers." + handler, "envelope", extra_env)
        try:
            rt.wait_ready()
            return rt.call(envelope)
        finally:
            rt.stop()

    def test_future_actors_may_change(self):
        out = self.run_with("rewrite", env({}, headers={"h": 1}))
        self.assertEqual(out[0]["route"], {"actors": ["a", "inserted", "b"], "current": 1})
        self.assertEqual(out[0]["headers"], {"h": 1})

    def test_processed_actors_may_not_change_even_in_place(self):
        out = self.run_with("erase_processed", env({}))
        self.assertEqual(out[0]["error"], "processing_error")
        self.assertIn("already ran", out[0]["details"]["message"])

    def test_validation_can_be_disabled(self):
        out = self.run_with("erase_processed", env({}), {"ASYA_ENABLE_VALIDATION": "false"})
        self.assertEqual(out[0]["route"]["actors"][0], "renamed")

    def test_current_past_the_end_is_refused_with_validation_and_kept_without(self):
        out = self.run_with("past_the_end", env({}))
        self.assertEqual(out[0]["error"], "processing_error")
        out = self.run_with("past_the_end", env({"k": 1}), {"ASYA_ENABLE_VALIDATION": "false"})
        self.assertEqual(out[0]["route"], {"actors": ["a", "b"], "current": 7}, "handed back as the handler set it")

    def test_envelope_fanout(self):
        out = self.run_with("env_fanout", env({}))
        self.assertEqual([r["payload"] for r in out], [{"i": 0}, {"i": 1}])


class ProtocolTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rt = RuntimeProc("handlers.echo")
        cls.rt.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.rt.stop()

    def test_unicode_nulls_nesting(self):
        payload = {"t": "héllo ✓ 你好 🚀", "n": None, "deep": None}
        node = payload
        for _ in range(20):
            node["deep"] = {"deep": None}
            node = node["deep"]
        self.assertEqual(self.rt.call(env(payload))[0]["payload"], payload)

    def test_ten_megabytes(self):
        blob = "x" * (10 * 1024 * 1024)
        self.assertEqual(len(self.rt.call(env({"b": blob}))[0]["payload"]["b"]), len(blob))

    def test_input_past_the_end_is_accepted(self):
        # SPEC §2: the route is done; such an envelope reaches happy-end as it is, and an end
        # handler must still get it.
        out = self.rt.call(env({"k": 1}, actors=("a",), current=6))
        self.assertEqual(out[0]["payload"], {"k": 1})

    def test_zero_length_frame(self):
        out = self.rt.raw(struct.pack(">I", 0))
        self.assertEqual(out[0]["error"], "msg_parsing_error")

    def test_invalid_utf8_and_json_and_shape(self):
        for body in (b"\xff\xfe\x00", b"{not json", b"[1,2]", json.dumps({"id": "x", "payload": 1}).encode(),
                     json.dumps({"id": "x", "route": {"actors": ["a"], "current": -1}, "payload": 1}).encode(),
                     json.dumps({"id": "x", "route": {"actors": ["a"], "current": 0.5}, "payload": 1}).encode()):
            out = self.rt.raw(frame(body))
            self.assertEqual(out[0]["error"], "msg_parsing_error", body[:30])

    def test_client_closing_mid_frame_does_not_stop_the_server(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.rt.sock)
        s.sendall(struct.pack(">I", 1000) + b'{"id":')
        s.close()
        time.sleep(0.1)
        self.assertEqual(self.rt.call(env({"still": "serving"}))[0]["payload"], {"still": "serving"})


def call_many(rt, envelopes):
    """Sends every envelope on its own connection at once; returns the responses in order."""
    out = [None] * len(envelopes)
    errors = []

    def one(i, e):
        try:
            out[i] = rt.call(e)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i, e)) for i, e in enumerate(envelopes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]
    return out


def overlap(results):
    """True when every call started before any call ended (they ran at the same time)."""
    starts = [r[0]["payload"]["start"] for r in results]
    ends = [r[0]["payload"]["end"] for r in results]
    return max(starts) < min(ends)


class ConcurrencyTest(unittest.TestCase):
    def start(self, handler, mode="payload", **extra):
        rt = RuntimeProc("handlers." + handler, mode, {k: str(v) for k, v in extra.items()})
        self.addCleanup(rt.stop)
        rt.wait_ready()
        return rt

    def test_sync_handlers_overlap_in_a_thread_pool(self):
        rt = self.start("stamp", ASYA_CONCURRENCY=4)
        t0 = time.time()
        results = call_many(rt, [env({"sleep": 0.4}) for _ in range(4)])
        self.assertTrue(overlap(results), results)
        self.assertLess(time.time() - t0, 1.2, "4 calls of 0.4 s at concurrency 4 ran in parallel")
        self.assertGreater(len({r[0]["payload"]["thread"] for r in results}), 1)

    def test_concurrency_is_a_ceiling(self):
        rt = self.start("stamp", ASYA_CONCURRENCY=2)
        results = call_many(rt, [env({"sleep": 0.3}) for _ in range(4)])
        spans = sorted((r[0]["payload"]["start"], r[0]["payload"]["end"]) for r in results)
        for i, (s0, _) in enumerate(spans):
            running = sum(1 for s, e in spans if s <= s0 < e)
            self.assertLessEqual(running, 2, spans)
        self.assertFalse(overlap(results), "the 3rd and 4th call waited for a free slot")

    def test_sync_at_one_stays_serial(self):
        rt = self.start("stamp")
        results = call_many(rt, [env({"sleep": 0.2}) for _ in range(3)])
        spans = sorted((r[0]["payload"]["start"], r[0]["payload"]["end"]) for r in results)
        for (s0, e0), (s1, _) in zip(spans, spans[1:]):
            self.assertGreaterEqual(s1, e0 - 0.001, spans)

    def test_async_handlers_overlap_on_one_loop(self):
        rt = self.start("astamp", ASYA_CONCURRENCY=8)
        results = call_many(rt, [env({"sleep": 0.4}) for _ in range(8)])
        self.assertTrue(overlap(results), results)
        self.assertEqual(len({r[0]["payload"]["thread"] for r in results}), 1, "one event loop thread")
        self.assertEqual(results[0][0]["route"]["current"], 1)

    def test_async_works_at_concurrency_one(self):
        rt = self.start("astamp")
        results = call_many(rt, [env({"sleep": 0.2}) for _ in range(2)])
        self.assertFalse(overlap(results))
        self.assertEqual(results[0][0]["payload"].keys(), {"start", "end", "thread"})

    def test_async_class_method(self):
        rt = RuntimeProc("handlers.AsyncModel.predict", extra_env={"ASYA_CONCURRENCY": "4"})
        self.addCleanup(rt.stop)
        rt.wait_ready()
        results = call_many(rt, [env({"x": i, "sleep": 0.1}) for i in range(4)])
        self.assertEqual([r[0]["payload"]["y"] for r in results], [0, 5, 10, 15])

    def test_async_errors_and_non_retryable(self):
        rt = self.start("aboom", ASYA_CONCURRENCY=2)
        out = rt.call(env({}))
        self.assertEqual(out[0]["error"], "processing_error")
        self.assertEqual(out[0]["details"]["message"], "aboom")
        self.assertIn("Traceback", out[0]["details"]["traceback"])
        self.assertNotIn("retryable", out[0]["details"])
        rt2 = self.start("apermanent")
        self.assertEqual(rt2.call(env({}))[0]["details"]["retryable"], False)

    def test_async_fanout_and_bad_frames(self):
        rt = self.start("afanout", ASYA_CONCURRENCY=3)
        self.assertEqual([r["payload"] for r in rt.call(env({"n": 2}))], [{"i": 0}, {"i": 1}])
        self.assertEqual(rt.raw(struct.pack(">I", 0))[0]["error"], "msg_parsing_error")
        self.assertEqual(rt.raw(frame(b"{nope"))[0]["error"], "msg_parsing_error")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(rt.sock)
        s.sendall(struct.pack(">I", 100) + b'{"id"')
        s.close()
        self.assertEqual(len(rt.call(env({"n": 1}))), 1, "still serving after a broken connection")

    def test_async_envelope_mode_validation(self):
        rt = self.start("aerase_processed", "envelope", ASYA_CONCURRENCY=2)
        out = rt.call(env({}))
        self.assertEqual(out[0]["error"], "processing_error")
        self.assertIn("already ran", out[0]["details"]["message"])
        rt2 = self.start("arewrite", "envelope")
        self.assertEqual(rt2.call(env({}, headers={"h": 1}))[0]["route"], {"actors": ["a", "inserted", "b"], "current": 1})

    def test_sync_errors_at_concurrency(self):
        rt = self.start("boom", ASYA_CONCURRENCY=4)
        results = call_many(rt, [env({}) for _ in range(4)])
        self.assertEqual({r[0]["details"]["message"] for r in results}, {"boom"})

    def test_sigterm_finishes_every_in_flight_call(self):
        for handler in ("stamp", "astamp"):
            rt = RuntimeProc("handlers." + handler, extra_env={"ASYA_CONCURRENCY": "4"})
            try:
                rt.wait_ready()
                box = {}
                th = threading.Thread(target=lambda: box.setdefault("out", call_many(rt, [env({"sleep": 0.8}) for _ in range(4)])))
                th.start()
                time.sleep(0.3)
                rt.proc.send_signal(signal.SIGTERM)
                th.join(10)
                self.assertEqual(len(box["out"]), 4, handler)
                self.assertTrue(all("start" in r[0]["payload"] for r in box["out"]), handler)
                self.assertEqual(rt.proc.wait(10), 0, handler)
                self.assertFalse(os.path.exists(rt.sock))
                self.assertFalse(os.path.exists(rt.ready))
            finally:
                rt.stop()


def batch(*envs):
    return {"batch": list(envs)}


class BatchTest(unittest.TestCase):
    def start(self, handler, mode="payload", size=32, **extra):
        e = {"ASYA_BATCH_SIZE": str(size)}
        e.update({k: str(v) for k, v in extra.items()})
        rt = RuntimeProc("handlers." + handler, mode, e)
        self.addCleanup(rt.stop)
        rt.wait_ready()
        return rt

    def test_batch_frame_gets_one_response_per_envelope_in_order(self):
        rt = self.start("batch_double")
        out = rt.call(batch(*[env({"n": i}, id=f"e{i}") for i in range(5)]))
        self.assertEqual(list(out.keys()), ["batch"])
        self.assertEqual([r[0]["payload"] for r in out["batch"]], [{"n": 2 * i, "batch": 5} for i in range(5)])
        self.assertEqual([r[0]["id"] for r in out["batch"]], [f"e{i}" for i in range(5)])
        self.assertTrue(all(r[0]["route"]["current"] == 1 for r in out["batch"]))

    def test_single_frame_calls_the_batch_handler_with_a_list_of_one(self):
        rt = self.start("batch_double")
        out = rt.call(env({"n": 4}))
        self.assertEqual(out[0]["payload"], {"n": 8, "batch": 1})

    def test_async_batch_handler(self):
        rt = self.start("abatch_double", ASYA_CONCURRENCY=2)
        out = rt.call(batch(env({"n": 1}), env({"n": 2})))
        self.assertEqual([r[0]["payload"]["n"] for r in out["batch"]], [2, 4])

    def test_slots_fail_fan_out_and_end_on_their_own(self):
        rt = self.start("batch_mixed")
        out = rt.call(batch(
            env({"n": 0}),
            env({"n": 1, "kind": "fail"}),
            env({"n": 3, "kind": "fanout"}),
            env({"n": 3, "kind": "none"}),
            env({"n": 4, "kind": "empty"}),
            env({"n": 5, "kind": "permanent"}),
            env({"n": 6, "kind": "set"}),
            env({"n": 7}),
        ))["batch"]
        self.assertEqual(out[0][0]["payload"], {"n": 0})
        self.assertEqual(out[1][0]["error"], "processing_error")
        self.assertEqual(out[1][0]["details"]["message"], "slot 1 failed")
        self.assertEqual(out[1][0]["details"]["type"], "ValueError")
        self.assertNotIn("retryable", out[1][0]["details"])
        self.assertEqual([r["payload"] for r in out[2]], [{"i": 0}, {"i": 1}, {"i": 2}])
        self.assertEqual(out[3], [])
        self.assertEqual(out[4], [])
        self.assertEqual(out[5][0]["details"]["retryable"], False)
        self.assertEqual(out[6][0]["error"], "processing_error")
        self.assertIn("JSON-serialisable", out[6][0]["details"]["message"])
        self.assertEqual(out[7][0]["payload"], {"n": 7})

    def test_wrong_length_or_type_fails_every_envelope_clearly(self):
        for handler, needle in (("batch_short", "length 2"), ("batch_dict", "returned dict")):
            rt = self.start(handler)
            out = rt.call(batch(env({}), env({}), env({})))["batch"]
            self.assertEqual(len(out), 3)
            for r in out:
                self.assertEqual(r[0]["error"], "processing_error", handler)
                self.assertIn(needle, r[0]["details"]["message"])
                self.assertIn("expected a list of 3 results", r[0]["details"]["message"])

    def test_a_raising_batch_handler_fails_every_envelope(self):
        rt = self.start("batch_raises")
        out = rt.call(batch(env({}), env({})))["batch"]
        self.assertEqual([r[0]["details"]["message"] for r in out], ["the GPU fell over"] * 2)
        self.assertEqual(out[0][0]["details"]["type"], "RuntimeError")

    def test_a_bad_envelope_in_a_batch_fails_alone_and_is_not_passed_to_the_handler(self):
        rt = self.start("batch_double")
        bad = {"id": "bad", "payload": 1}
        out = rt.call(batch(env({"n": 1}), bad, env({"n": 2})))["batch"]
        self.assertEqual(out[1][0]["error"], "msg_parsing_error")
        self.assertEqual([out[0][0]["payload"], out[2][0]["payload"]], [{"n": 2, "batch": 2}, {"n": 4, "batch": 2}])
        self.assertEqual(rt.call(batch()), {"batch": []})
        self.assertEqual(rt.call({"batch": "x"})[0]["error"], "msg_parsing_error")

    def test_envelope_mode_batch_validates_each_route_against_its_copy(self):
        rt = self.start("batch_envelopes", "envelope")
        out = rt.call(batch(env({}), env({"erase": True}), env({}, headers={"h": 2})))["batch"]
        self.assertEqual(out[0][0]["route"], {"actors": ["a", "added", "b"], "current": 1})
        self.assertEqual(out[1][0]["error"], "processing_error")
        self.assertIn("already ran", out[1][0]["details"]["message"])
        self.assertEqual(out[2][0]["headers"], {"h": 2})

    def test_batch_frame_to_a_single_call_handler_is_served_per_envelope(self):
        rt = RuntimeProc("handlers.double")
        self.addCleanup(rt.stop)
        rt.wait_ready()
        out = rt.call(batch(env({"n": 1}), env({"n": 2})))
        self.assertEqual([r[0]["payload"]["n"] for r in out["batch"]], [2, 4])

    def test_batches_run_concurrently(self):
        rt = self.start("batch_stamp", ASYA_CONCURRENCY=3)
        results = call_many(rt, [batch(env({}), env({})) for _ in range(3)])
        starts = [r["batch"][0][0]["payload"]["start"] for r in results]
        ends = [r["batch"][0][0]["payload"]["end"] for r in results]
        self.assertLess(max(starts), min(ends), "three batch calls overlapped")


TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def tp(i):
    return f"00-{i:032x}-{i:016x}-01"


class TraceTest(unittest.TestCase):
    """asya_runtime.current_trace(): the traceparent of the envelope being processed (issue 19)."""

    def start(self, handler, **extra):
        rt = RuntimeProc("handlers." + handler, "payload", {k: str(v) for k, v in extra.items()})
        self.addCleanup(rt.stop)
        rt.wait_ready()
        return rt

    def test_sync_handler_sees_the_envelope_trace_and_the_environment_carrier(self):
        rt = self.start("trace")
        out = rt.call(env({}, headers={"traceparent": TP, "tracestate": "k=v"}))[0]["payload"]
        self.assertEqual(out, {"trace": TP, "environ": TP, "state": "k=v"})
        out = rt.call(env({}))[0]["payload"]
        self.assertEqual(out, {"trace": None, "environ": None, "state": None}, "an untraced envelope sees nothing left over")

    def test_concurrent_sync_calls_each_see_their_own_trace_and_the_environment_stays_clean(self):
        rt = self.start("trace", ASYA_CONCURRENCY=4)
        results = call_many(rt, [env({"sleep": 0.2}, headers={"traceparent": tp(i + 1)}) for i in range(4)])
        got = sorted(r[0]["payload"]["trace"] for r in results)
        self.assertEqual(got, sorted(tp(i + 1) for i in range(4)))
        self.assertEqual({r[0]["payload"]["environ"] for r in results}, {None}, "os.environ is process-wide: not touched when calls overlap")

    def test_async_calls_each_see_their_own_trace(self):
        rt = self.start("atrace", ASYA_CONCURRENCY=4)
        results = call_many(rt, [env({"sleep": 0.2}, headers={"traceparent": tp(i + 1)}) for i in range(4)])
        self.assertEqual(sorted(r[0]["payload"]["trace"] for r in results), sorted(tp(i + 1) for i in range(4)))

    def test_batch_handler_gets_one_trace_per_input(self):
        rt = self.start("batch_trace", ASYA_BATCH_SIZE=4)
        batch = [env({}, headers={"traceparent": tp(1)}), env({}), env({}, headers={"traceparent": tp(3)})]
        res = rt.raw(frame(json.dumps({"batch": batch}).encode("utf-8")))["batch"]
        self.assertEqual([r[0]["payload"]["trace"] for r in res], [[tp(1), None, tp(3)]] * 3)

    def test_bad_headers_are_no_trace_not_an_error(self):
        rt = self.start("trace")
        for headers in ({"traceparent": 7}, "not-a-dict", {"traceparent": ""}):
            out = rt.call(env({}, headers=headers))
            self.assertEqual(out[0]["payload"]["trace"], None, headers)


class LifecycleTest(unittest.TestCase):
    def test_stale_socket_and_ready_file_are_removed_at_start(self):
        d = tempfile.mkdtemp(prefix="asya-rt-stale-")
        mod = tempfile.mkdtemp(prefix="asya-rt-mod-")
        with open(os.path.join(mod, "handlers.py"), "w") as f:
            f.write(HANDLERS)
        ready = os.path.join(d, "runtime-ready")
        sock_path = os.path.join(d, "asya-runtime.sock")
        with open(ready, "w") as f:
            f.write("ready")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(sock_path)
        stale.close()  # a socket file nobody listens on, as after a crash
        stale_ino = os.stat(ready).st_ino
        e = dict(os.environ, ASYA_HANDLER="handlers.echo", ASYA_SOCKET_DIR=d, PYTHONPATH=mod + os.pathsep + HERE)
        proc = subprocess.Popen([sys.executable, RUNTIME], env=e, stderr=subprocess.DEVNULL)
        try:
            end = time.time() + 15
            while time.time() < end and (not os.path.exists(ready) or os.stat(ready).st_ino == stale_ino):
                time.sleep(0.02)
            self.assertNotEqual(os.stat(ready).st_ino, stale_ino, "a fresh ready file was written")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock_path)
            s.sendall(frame(json.dumps(env(1)).encode()))
            (n,) = struct.unpack(">I", recv_exact(s, 4))
            self.assertEqual(json.loads(recv_exact(s, n))[0]["payload"], 1)
            s.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(mod, ignore_errors=True)

    def test_sigterm_finishes_in_flight_request_then_cleans_up(self):
        rt = RuntimeProc("handlers.slow")
        try:
            rt.wait_ready()
            result = {}

            def call():
                result["out"] = rt.call(env({"sleep": 0.8}))

            th = threading.Thread(target=call)
            th.start()
            time.sleep(0.3)
            rt.proc.send_signal(signal.SIGTERM)
            th.join(10)
            self.assertEqual(result["out"][0]["payload"], {"slept": True})
            self.assertEqual(rt.proc.wait(10), 0)
            self.assertFalse(os.path.exists(rt.sock))
            self.assertFalse(os.path.exists(rt.ready))
        finally:
            rt.stop()

    def bad_env(self, handler, extra=None):
        rt = RuntimeProc(handler, extra_env=extra)
        try:
            code = rt.proc.wait(15)
            err = rt.proc.stderr.read().decode()
            return code, err
        finally:
            rt.stop()

    def test_bad_env_exits_1_naming_the_variable(self):
        cases = [
            ("", None, "ASYA_HANDLER"),
            ("nodots", None, "ASYA_HANDLER"),
            ("handlers.missing_function", None, "ASYA_HANDLER"),
            ("no_such_module.fn", None, "ASYA_HANDLER"),
            ("handlers.NeedsArg.run", None, "path"),
            ("handlers.echo", {"ASYA_HANDLER_MODE": "batch"}, "ASYA_HANDLER_MODE"),
            ("handlers.echo", {"ASYA_SOCKET_CHMOD": "rwx"}, "ASYA_SOCKET_CHMOD"),
            ("handlers.echo", {"ASYA_CONCURRENCY": "0"}, "ASYA_CONCURRENCY"),
            ("handlers.echo", {"ASYA_CONCURRENCY": "many"}, "ASYA_CONCURRENCY"),
            ("handlers.echo", {"ASYA_CONCURRENCY": "1001"}, "ASYA_CONCURRENCY"),
            ("handlers.echo", {"ASYA_BATCH_SIZE": "-1"}, "ASYA_BATCH_SIZE"),
            ("handlers.echo", {"ASYA_BATCH_SIZE": "2.5"}, "ASYA_BATCH_SIZE"),
            ("handlers.echo", {"ASYA_BATCH_WAIT": "soon"}, "ASYA_BATCH_WAIT"),
            ("handlers.echo", {"ASYA_BATCH_WAIT": "2m"}, "ASYA_BATCH_WAIT"),
        ]
        for handler, extra, needle in cases:
            code, err = self.bad_env(handler, extra)
            self.assertEqual(code, 1, (handler, extra, err))
            lines = [l for l in err.splitlines() if l.strip()]
            self.assertEqual(len(lines), 1, err)
            rec = json.loads(lines[0])
            self.assertIn(needle, rec["msg"] + rec.get("variable", ""), err)


if __name__ == "__main__":
    unittest.main()
