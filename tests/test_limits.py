"""``kennen.limits``: what a stranger crafted (zip bombs, endless answers, deep JSON, pickles) is a one-line refusal."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kennen import data, limits, queries
from kennen.attributes import ATTRIBUTES
from kennen.cli import main as cli
from kennen.errors import KennenError
from kennen.imagenet.probe import load_zoo
from kennen.metamodel.artifact import load_metamodel, save_metamodel
from kennen.pt2 import load_program
from kennen.targets import HttpBox, load_target
from tests.conftest import REPO, ctrl_c_default

MB = 2**20
IMAGES = np.zeros((2, 1, 28, 28), dtype=np.float32)


def one_line(message: str) -> bool:
    return "\n" not in message.strip() and "Traceback" not in message


# --- JSON ------------------------------------------------------------------------------------------


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


@settings(max_examples=40, deadline=None)
@given(depth=st.integers(1, 140), noise=st.sampled_from(["", '"]]]["', '"\\"[[["', '{"a": "}}}"}']))
def test_depth_is_counted_outside_strings_and_refused_past_the_limit(depth, noise):
    text = nested(depth, noise or "1")
    expected = depth + (1 if noise.startswith("{") else 0)
    assert limits.json_depth(text) == expected
    if expected <= limits.JSON_DEPTH.value():
        assert limits.loads_bounded(text, "x") == json.loads(text)
    else:
        with pytest.raises(KennenError, match=r"^x: nesting \d+ deep; .* KENNEN_MAX_JSON_DEPTH"):
            limits.loads_bounded(text, "x")


@pytest.mark.parametrize("depth", [65, 100_000])
def test_deep_json_files_are_refused_not_a_recursion_error(tmp_path, depth):
    path = tmp_path / "meta.json"
    path.write_text(nested(depth))
    with pytest.raises(KennenError) as e:
        limits.read_json_bounded(path)
    assert str(e.value).startswith(f"{path}: nesting {depth} deep") and one_line(str(e.value))


def test_the_limits_follow_their_environment_variables(tmp_path, monkeypatch):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(["x" * MB, "y" * MB]))
    assert len(limits.read_json_bounded(path)) == 2
    monkeypatch.setenv("KENNEN_MAX_JSON_MB", "1")
    with pytest.raises(
        KennenError, match=r"the file holds 2\.0 MB; the limit on a JSON file is 1 MB \(set KENNEN_MAX_JSON_MB"
    ):
        limits.read_json_bounded(path)
    monkeypatch.setenv("KENNEN_MAX_JSON_MB", "lots")
    with pytest.raises(KennenError, match="^KENNEN_MAX_JSON_MB: expected a positive integer, got 'lots'$"):
        limits.read_json_bounded(path)


def test_a_metamodel_with_deep_json_is_a_one_line_error(tmp_path):
    stem = tmp_path / "kennen_i"
    save_metamodel(stem, {"x": torch.zeros(1)}, {})
    stem.with_suffix(".json").write_text('{"a": ' + nested(50_000) + "}")
    with pytest.raises(KennenError, match="nesting 50001 deep; .*KENNEN_MAX_JSON_DEPTH"):
        load_metamodel(stem)


# --- npz -------------------------------------------------------------------------------------------


def test_npz_with_object_arrays_is_one_line_without_numpys_unsafe_hint(tmp_path):
    objects = np.array([{"a": 1}], dtype=object)
    path = tmp_path / "outputs.npz"
    np.savez(path, outputs=objects, query_index=np.arange(1), **{k: objects for k in data.IDX_FILES})
    for read in (queries.load_outputs, data.load, lambda p: load_zoo(p.parent)):
        with pytest.raises(KennenError) as e:
            read(path)
        assert str(e.value) == f"{path}: holds pickled objects; kennen reads plain arrays only"


# --- .pt2 archives -----------------------------------------------------------------------------------


def deflated_zeros(mb: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``mb`` MB of zeros (about 1 KB per MB) and its CRC, built in milliseconds.

    After a full flush the compressor starts afresh, so the bytes of one MB repeat exactly.
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(MB)) + c.flush(zlib.Z_FULL_FLUSH)
    crc, zeros = 0, bytes(MB)
    for _ in range(mb):
        crc = zlib.crc32(zeros, crc)
    return block * mb + c.flush(), crc


def zip_of(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip from (name, packed bytes, method, crc, unpacked size): zipfile cannot write packed bytes as given."""
    out, directory = bytearray(), bytearray()
    for name, packed, method, crc, size in members:
        raw = name.encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(packed), size, len(raw), 0)
        out += raw + packed
        directory += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            method,
            0,
            0x21,
            crc,
            len(packed),
            size,
            len(raw),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        directory += raw
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), len(out), 0)
    return bytes(out + directory + end)


def stored(name: str, content: bytes) -> tuple[str, bytes, int, int, int]:
    return name, content, 0, zlib.crc32(content), len(content)


def bomb(mb: int) -> bytes:
    packed, crc = deflated_zeros(mb)
    return zip_of(
        [
            stored("archive/.data/version", b"1"),
            stored("archive/models/model.json", b"{}"),
            ("archive/data/weights/weight_0", packed, 8, crc, mb * MB),
        ]
    )


def test_the_bomb_is_a_valid_zip():
    with zipfile.ZipFile(io.BytesIO(bomb(3))) as z:
        assert z.read("archive/data/weights/weight_0") == bytes(3 * MB)


CHILD = """
import resource, sys, time
from pathlib import Path
from kennen.errors import KennenError
from kennen.pt2 import load_program
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    load_program(Path(sys.argv[1]))
except KennenError as e:
    print(e)
print(time.perf_counter() - start, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_a_zip_bomb_is_refused_quickly_in_bounded_memory(tmp_path):
    path = tmp_path / "bomb.pt2"
    path.write_bytes(bomb(768))  # 768 MB of zeros in under 1 MB
    assert path.stat().st_size < MB
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env, timeout=60)
    message, timing = done.stdout.strip().splitlines()
    seconds, before, after = (float(x) for x in timing.split())
    assert message == (
        f"{path}: its members unpack to 768.0 MB; the limit on a .pt2 archive (file and unpacked members) is 256 MB "
        "(set KENNEN_MAX_ARCHIVE_MB to raise it)"
    )
    assert seconds < 2 and (after - before) * 1024 < 64 * MB  # ru_maxrss is in KB on Linux


def test_a_compression_ratio_bomb_and_a_member_count_bomb_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "ratio.pt2"
    path.write_bytes(bomb(16))
    with pytest.raises(KennenError) as e:
        load_program(path)
    assert str(e.value).startswith(f"{path}: member archive/data/weights/weight_0 unpacks to 16.0 MB, ")
    assert "KENNEN_MAX_ARCHIVE_RATIO" in str(e.value)
    monkeypatch.setenv("KENNEN_MAX_ARCHIVE_RATIO", "100000")
    with pytest.raises(KennenError, match="cannot load the program"):
        load_program(path)  # within the limits, the usual checks and torch's own go on
    many = tmp_path / "many.pt2"
    many.write_bytes(zip_of([stored(f"archive/extra/{i}", b"") for i in range(1001)]))
    with pytest.raises(KennenError) as e:
        load_program(many)
    assert str(e.value) == (
        f"{many}: 1001 members; the limit on the members of a .pt2 archive is 1000 "
        "(set KENNEN_MAX_ARCHIVE_MEMBERS to raise it)"
    )


def test_a_large_archive_file_and_a_large_json_member_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "large.pt2"
    path.write_bytes(zip_of([stored("archive/models/model.json", b" " * (2 * MB))]))
    monkeypatch.setenv("KENNEN_MAX_JSON_MB", "1")
    with pytest.raises(
        KennenError, match="member archive/models/model.json: unpacks to 2.0 MB of JSON; .*KENNEN_MAX_JSON_MB"
    ):
        load_program(path)
    monkeypatch.setenv("KENNEN_MAX_ARCHIVE_MB", "1")
    with pytest.raises(KennenError, match=r"large.pt2: the file holds 2.0 MB; .* is 1 MB \(set KENNEN_MAX_ARCHIVE_MB"):
        load_program(path)


# --- HTTP answers --------------------------------------------------------------------------------------


class Answering:
    """A server on 127.0.0.1 that answers every POST with ``respond(handler)``; ``release`` ends slow answers."""

    def __init__(self, respond):
        self.hit, self.release = threading.Event(), threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.hit.set()
                respond(self, outer)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/predict"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def send(handler, body: bytes, length: int | None) -> None:
    handler.send_response(200)
    if length is not None:
        handler.send_header("Content-Length", str(length))
    handler.end_headers()
    handler.wfile.write(body)


PADDED = json.dumps({"outputs": [[0.1] * 10] * 2, "pad": "x" * (2 * MB)}).encode()


@pytest.mark.parametrize(
    "respond, found",
    [
        (lambda h, s: send(h, PADDED, len(PADDED)), "the answer declares 2.0 MB (Content-Length)"),
        (lambda h, s: send(h, PADDED, None), "the answer goes on past 1.0 MB"),  # no length: read until closed
        (lambda h, s: send(h, b"{}", 10**15), "the answer declares 953674316.4 MB (Content-Length)"),  # a lie
    ],
    ids=["oversized", "unannounced", "lying"],
)
@pytest.mark.slow
def test_http_answers_are_bounded(monkeypatch, respond, found):
    monkeypatch.setenv("KENNEN_MAX_ANSWER_MB", "1")
    with Answering(respond) as server, pytest.raises(KennenError) as e:
        HttpBox(server.url, timeout=5, retries=0)(IMAGES)
    assert str(e.value) == (
        f"{server.url}: {found}; the limit on an HTTP answer's body is 1 MB (set KENNEN_MAX_ANSWER_MB to raise it)"
    )


@pytest.mark.parametrize("depth", [65, 200_000])
@pytest.mark.slow
def test_deeply_nested_answers_are_refused(depth):
    body = ('{"outputs": ' + nested(depth) + "}").encode()
    with Answering(lambda h, s: send(h, body, len(body))) as server, pytest.raises(KennenError) as e:
        HttpBox(server.url, timeout=5, retries=0)(IMAGES)
    assert str(e.value).startswith(f"{server.url}: nesting {depth + 1} deep; the limit on the nesting depth of JSON")


def test_unsupported_schemes_say_so():
    with pytest.raises(KennenError) as e:
        load_target("ftp://example.org/model")
    assert str(e.value) == (
        "ftp://example.org/model: unsupported scheme ftp://; kennen whiten speaks http:// and https:// "
        "(or give a .pt2/.pt/.ts file or a module:callable)"
    )


# --- the command line's output channels -------------------------------------------------------------


@pytest.fixture
def label_models(tmp_path) -> Path:
    """A kennen-i metamodel that needs no training: 12 blank queries, one per attribute."""
    models = tmp_path / "models"
    save_metamodel(
        models / "kennen_i",
        {
            "queries.each": torch.zeros(len(ATTRIBUTES), 1, 28, 28),
            "fallback.each": torch.zeros(len(ATTRIBUTES), dtype=torch.long),
        },
        {"method": "kennen-i", "target": "each", "zoo": {}, "test_accuracy": {}},
    )
    return models


def test_json_stdout_stays_json_when_a_trusted_target_prints_and_warns(label_models, tmp_path, monkeypatch, capsys):
    (tmp_path / "kennen_t_chatty.py").write_text(
        "import warnings\nprint('hello from import')\n"
        "def f(x):\n    print('hello from call')\n"
        "    warnings.warn('kennen_t_chatty says\\nmore than one line', FutureWarning)\n"
        "    return [0] * len(x)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code = cli(
        [
            "whiten",
            "kennen_t_chatty:f",
            "--output-type",
            "label",
            "--models",
            str(label_models),
            "--trust-code",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["method"] == "kennen-i"
    assert "hello from import" in err and "hello from call" in err
    assert "warning: FutureWarning: kennen_t_chatty says" in err.splitlines() and "more than one line" not in err


def run_module(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "kennen.cli", *args]
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_default,
        **kw,
    )


@pytest.mark.slow
def test_python_m_does_not_import_modules_from_the_current_folder(tmp_path):
    marker = tmp_path / "imported"
    for name in ("yaml", "safetensors"):
        (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    out, err = run_module(["whiten", "ftp://example.org/model"], tmp_path).communicate(timeout=60)
    assert not marker.exists()
    assert err.strip().startswith("error: ftp://example.org/model: unsupported scheme ftp://") and one_line(err)


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_exit_130(label_models, tmp_path):
    with Answering(lambda h, s: s.release.wait(30)) as server:
        args = ["whiten", server.url, "--output-type", "label", "--models", str(label_models), "--timeout", "30"]
        child = run_module(args, tmp_path)
        assert server.hit.wait(60), child.communicate()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=20)
    assert child.returncode == 130 and out == "" and err == "interrupted\n"


@pytest.mark.slow
def test_ctrl_c_while_torch_imports_is_one_line_and_exit_130(tmp_path):
    child = run_module(["whiten", "http://127.0.0.1:9/never", "--output-type", "label"], tmp_path)
    time.sleep(0.5)  # past the interpreter's own start (~50 ms), within torch's import (a second or two)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130 and out == "" and err == "interrupted\n"
