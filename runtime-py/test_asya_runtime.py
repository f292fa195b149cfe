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

    def test_zero_length_frame(self):
        out = self.rt.raw(struct.pack(">I", 0))
        self.assertEqual(out[0]["error"], "msg_parsing_error")

    def test_invalid_utf8_and_json_and_shape(self):
        for body in (b"\xff\xfe\x00", b"{not json", b"[1,2]", json.dumps({"id": "x", "payload": 1}).encode(),
                     json.dumps({"id": "x", "route": {"actors": ["a"], "current": 9}, "payload": 1}).encode()):
            out = self.rt.raw(frame(body))
            self.assertEqual(out[0]["error"], "msg_parsing_error", body[:30])

    def test_client_closing_mid_frame_does_not_stop_the_server(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.rt.sock)
        s.sendall(struct.pack(">I", 1000) + b'{"id":')
        s.close()
        time.sleep(0.1)
        self.assertEqual(self.rt.call(env({"still": "serving"}))[0]["payload"], {"still": "serving"})


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
