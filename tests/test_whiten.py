"""`kennen whiten` on black boxes built outside any zoo: a file, a callable, an HTTP server."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from kennen.attributes import ATTRIBUTES, BY_KEY
from kennen.cli import main as cli
from kennen.data import normalise
from kennen.errors import KennenError
from kennen.metamodel import kennen_i
from kennen.metamodel.artifact import load_metamodel, save_metamodel
from kennen.metamodel.crafted import BoxZoo, QueryStep, to_pixels
from kennen.metamodel.kennen_o import Optimiser, accuracies, fit, predict, targets
from kennen.whiten import HttpBox, load_target, parse_answers, whiten
from kennen.zoo.net import MnistNet, NetConfig, n_par
from tests.conftest import REPO, synthetic_mnist

VARIED = ("act", "pool", "ks")  # what differs between the mini zoo's networks
FIXED = {"drop": False, "n_conv": 2, "n_fc": 2, "alg": "sgd", "bs": 64, "size": "all", "split": "all", "ens": False}
N_QUERIES = 20


def train_net(cfg: NetConfig, seed: int, data: dict) -> MnistNet:
    """A few SGD steps on the synthetic digits: enough for the architecture to show in the outputs."""
    torch.manual_seed(seed)
    net = MnistNet(cfg)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.5)
    x, y = torch.from_numpy(normalise(data["train_images"])), torch.from_numpy(data["train_labels"]).long()
    for step in range(15):
        idx = torch.arange(step * 32, step * 32 + 32) % len(x)
        opt.zero_grad()
        torch.nn.functional.nll_loss(net(x[idx]), y[idx]).backward()
        opt.step()
    return net.eval()


def box_attributes(cfg: NetConfig) -> dict:
    return {"act": cfg.act, "pool": cfg.pool, "ks": cfg.ks, **FIXED, "n_par": n_par(cfg)}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 48-network mini zoo, kennen-o and kennen-i trained on it and saved as the pipeline saves them."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("whiten")
    data = synthetic_mnist(n_train=480, n_test=100, seed=3)
    grid = list(itertools.product(("relu", "tanh", "elu", "prelu"), (True, False), (3, 5)))
    nets, boxes = [], []
    for seed, (act, pool, ks) in itertools.product(range(3), grid):
        cfg = NetConfig(act, False, pool, ks, 2, 2)
        nets.append(train_net(cfg, seed, data))
        boxes.append(box_attributes(cfg))
    y = targets(boxes)
    queries = torch.from_numpy(normalise(data["test_images"][:N_QUERIES]))
    zoo = BoxZoo(nets, [[i] for i in range(len(nets))])
    feats = zoo.outputs(queries, range(len(nets))).reshape(len(nets), -1)
    model = fit(feats, y, 64, Optimiser("adam", 1e-3, weight_decay=1e-3, batch=16, epochs=150), seed=0)
    held = accuracies(y.numpy(), predict(model, feats))  # stands in for the held-out figures of a real run
    zoo_info = {"seed": 0, "sample_zoo.n_models": len(nets), "n_train_boxes": len(nets)}
    models = root / "models"
    save_metamodel(
        models / "kennen_o",
        {**{f"mlp.{k}": v for k, v in model.state_dict().items()}, "queries": torch.from_numpy(to_pixels(queries))},
        {"method": "kennen-o", "hidden": 64, "output": "prob", "zoo": zoo_info, "test_accuracy": held},
    )
    kp = kennen_i.KennenIParams(epochs=15, step=QueryStep(lr=1.0, batch=8))
    crafted = kennen_i.craft(zoo, range(len(nets)), y, queries[:12], kp, seed=0)
    fallback = kennen_i.fallback_values(y.numpy())
    save_metamodel(
        models / "kennen_i",
        {"queries.each": torch.from_numpy(to_pixels(crafted)), "fallback.each": torch.from_numpy(fallback)},
        {"method": "kennen-i", "target": "each", "zoo": zoo_info, "test_accuracy": {"acc.mean": 50.0}},
    )
    # Fresh black boxes: new seeds, never seen by the metamodels.
    fresh = []
    for i, (act, pool, ks) in enumerate(grid):
        cfg = NetConfig(act, False, pool, ks, 2, 2)
        fresh.append((cfg, train_net(cfg, 100 + i, data)))
    return {"root": root, "models": models, "fresh": fresh, "data": data}


def varied_accuracy(reports_and_cfgs) -> float:
    """Accuracy (%) over the attributes the mini zoo varies, across all boxes."""
    hits = [
        str(next(f for f in rep["attributes"] if f["attribute"] == k)["value"]) == BY_KEY[k].labels[BY_KEY[k].index(v)]
        for rep, cfg in reports_and_cfgs
        for k, v in box_attributes(cfg).items()
        if k in VARIED
    ]
    return 100.0 * float(np.mean(hits))


CHANCE_VARIED = float(np.mean([BY_KEY[k].chance for k in VARIED]))  # 41.7


def export(net: MnistNet, path: Path) -> None:
    """Save ``net`` as a torch.export program with a dynamic batch dimension."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(net, (torch.zeros(4, 1, 28, 28),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_whiten_saved_programs_beats_chance(world, tmp_path, capsys):
    results = []
    for i, (cfg, net) in enumerate(world["fresh"]):
        path = tmp_path / f"box{i}.pt2"
        export(net, path)
        code, out, err = run_cli(
            capsys, "whiten", str(path), "--models", str(world["models"]), "--output-type", "logprob", "--json"
        )
        assert code == 0, err
        rep = json.loads(out)
        assert rep["method"] == "kennen-o" and rep["queries"] == N_QUERIES  # kennen-io absent here: auto falls back
        assert [f["attribute"] for f in rep["attributes"]] == [a.key for a in ATTRIBUTES]
        # this fixture's metamodel predates calibration: softmax only, every attribute answered, no OOD verdict
        assert all(f["probability"] is None and 0 < f["raw_probability"] <= 1 for f in rep["attributes"])
        assert all(f["answered"] for f in rep["attributes"]) and rep["calibration"] is None
        assert rep["out_of_zoo"] is None
        results.append((rep, cfg))
    assert varied_accuracy(results) > CHANCE_VARIED + 20


def test_whiten_table_output_and_query_budget(world, tmp_path, capsys):
    cfg, net = world["fresh"][0]
    path = tmp_path / "box.pt2"
    export(net, path)
    code, out, _ = run_cli(capsys, "whiten", str(path), "--models", str(world["models"]), "--output-type", "logprob")
    assert code == 0
    lines = out.splitlines()
    assert lines[1].startswith(f"metamodel: kennen-o on logprob outputs, {N_QUERIES} queries sent")
    assert "sample_zoo.n_models 48" in lines[2]
    rows = lines[lines.index(next(ln for ln in lines if ln.startswith("attribute"))) + 1 :]
    assert [r.split()[0] for r in rows] == [a.key for a in ATTRIBUTES]
    # Too small a budget: nothing is sent, one line says why.
    code, out, err = run_cli(capsys, "whiten", str(path), "--models", str(world["models"]), "--max-queries", "5")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--max-queries: 5" in err
    # Labels only: kennen-i, 12 queries, which fit a budget of 12.
    code, out, err = run_cli(
        capsys, "whiten", str(path), "--models", str(world["models"]), "--output-type", "label", "--max-queries",
        "12", "--json",
    )  # fmt: skip
    assert code == 2 and "label needs [12]" in err  # the model answers scores, not labels: a clear error


def test_min_confidence_and_a_defence_from_the_command_line(world, tmp_path, capsys):
    """``--min-confidence`` reaches whiten; ``--defence`` changes what the metamodel reads, exactly as the stage's."""
    from kennen.defences import as_log, parse_defence, probabilities
    from kennen.whiten import whiten

    cfg, net = world["fresh"][1]
    path = tmp_path / "box.pt2"
    export(net, path)
    base = ("whiten", str(path), "--models", str(world["models"]), "--output-type", "logprob", "--json")
    code, out, err = run_cli(capsys, *base, "--min-confidence", "0.9")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["min_confidence"] == 0.9 and rep["defence"] is None
    # this fixture's metamodel is uncalibrated: its softmax (rounded to 4 decimals here) is the confidence
    assert all(f["answered"] == (f["raw_probability"] >= 0.9) for f in rep["attributes"]
               if abs(f["raw_probability"] - 0.9) > 1e-4)  # fmt: skip
    assert not any(f["answered"] for f in json.loads(run_cli(capsys, *base, "--min-confidence", "1.0")[1])["attributes"]
                   if f["raw_probability"] < 0.9999)  # fmt: skip

    def answers(images):
        with torch.no_grad():
            return torch.log_softmax(net(torch.from_numpy(images)), 1).numpy()

    for text in ("round:1", "label", "noise:0.2"):
        code, out, err = run_cli(capsys, *base, "--defence", text)
        assert code == 0, err
        rep = json.loads(out)
        assert rep["defence"] == text
        d = parse_defence(text)
        if text == "round:1":  # rounded answers do not sum to 1: no box could answer them as log-probabilities
            continue
        # the same box, defended by hand with the stage's functions, then whitened without a defence
        by_hand = whiten(lambda x, d=d: as_log(d.apply(probabilities(answers(x)), d.seed(0, 0))), "h", "logprob",
                         "kennen-o", world["models"])  # fmt: skip
        got = [f["raw_probability"] for f in rep["attributes"]]
        assert got == pytest.approx([f.raw_probability for f in by_hand.findings], abs=2e-3)  # eager vs exported
    clean = json.loads(run_cli(capsys, *base)[1])
    assert [f["raw_probability"] for f in rep["attributes"]] != [f["raw_probability"] for f in clean["attributes"]]
    code, out, _ = run_cli(capsys, *base[:-1], "--defence", "topk:2")
    assert code == 0 and "answers defended with topk:2" in out
    code, out, err = run_cli(capsys, "whiten", str(path), "--models", str(world["models"]), "--output-type", "label",
                             "--defence", "label")  # fmt: skip
    assert one_line_error(code, out, err) and "--defence: label acts on scores" in err


def test_whiten_a_callable_and_label_only_boxes(world, tmp_path, monkeypatch, capsys):
    cfg, net = world["fresh"][3]
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    (tmp_path / "my_box.py").write_text(
        textwrap.dedent(
            f"""
            import torch
            from kennen.zoo.net import MnistNet, NetConfig, n_par

            _net = MnistNet(NetConfig({cfg.act!r}, False, {cfg.pool!r}, {cfg.ks!r}, 2, 2))
            _net.load_state_dict(torch.load({str(tmp_path / "weights.pt")!r}, weights_only=True))
            _net.eval()

            def scores(images):
                return _net(images).exp()          # probabilities

            def labels(images):
                return _net(images).argmax(1).tolist()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = run_cli(
        capsys, "whiten", "my_box:scores", "--models", str(world["models"]), "--json", "--trust-code"
    )
    assert code == 0, err
    assert json.loads(out)["queries"] == N_QUERIES
    code, out, err = run_cli(
        capsys, "whiten", "my_box:labels", "--models", str(world["models"]), "--output-type", "label", "--json",
        "--trust-code",
    )  # fmt: skip
    assert code == 0, err
    rep = json.loads(out)
    assert rep["method"] == "kennen-i" and rep["queries"] == 12
    assert all(f["probability"] is None for f in rep["attributes"])
    code, _, err = run_cli(capsys, "whiten", "my_box:labels", "--models", str(world["models"]), "--method", "kennen-o",
                           "--output-type", "label", "--trust-code")  # fmt: skip
    assert code == 2 and "needs scores" in err


class _Local:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port), started and stopped by ``with``."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/predict"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class Server(_Local):
    """A black box over HTTP on 127.0.0.1, with optional failures before it answers."""

    def __init__(self, net, fail_first: int = 0, delay: float = 0.0, shape_bug: bool = False, fail_status: int = 503):
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.calls += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.calls <= fail_first:
                    self.send_response(fail_status)
                    self.end_headers()
                    return
                time.sleep(delay)
                x = torch.tensor(body["images"], dtype=torch.float32)[:, None]
                with torch.no_grad():
                    probs = net(x).exp()
                answer = probs[:, :5] if shape_bug else probs
                payload = json.dumps({"outputs": answer.tolist()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self._serve(Handler)


@pytest.mark.slow
def test_whiten_over_http_with_retries(world, capsys):
    cfg, net = world["fresh"][5]
    with Server(net, fail_first=2) as server:
        box = HttpBox(server.url, timeout=5, retries=3, backoff=0.01)
        report = whiten(box, server.url, "prob", models_dir=world["models"], batch_size=8)
        # 20 queries in batches of 8, 8, 4; the first two attempts failed with 503 and were retried.
        assert server.calls == 5
        assert report.queries == 8 + 8 + 8 + 8 + 4  # retried images count: they reached the server
        assert len(report.findings) == 12
    with Server(net, fail_first=100) as server:
        box = HttpBox(server.url, timeout=5, retries=2, backoff=0.01)
        with pytest.raises(KennenError, match=r"no answer after 3 attempts \(HTTP 503"):
            whiten(box, server.url, "prob", models_dir=world["models"])
    with Server(net, shape_bug=True) as server:
        code, out, err = run_cli(capsys, "whiten", server.url, "--models", str(world["models"]))
        assert code == 2 and "answered shape [20, 5] for 20 images; prob needs [20, 10]" in err
    with Server(net, delay=2.0) as server:
        box = HttpBox(server.url, timeout=0.3, retries=1, backoff=0.01)
        with pytest.raises(KennenError, match="no answer after 2 attempts"):
            whiten(box, server.url, "prob", models_dir=world["models"])


def test_missing_metamodel_and_bad_targets(world, tmp_path, capsys):
    cfg, net = world["fresh"][0]
    path = tmp_path / "box.pt2"
    export(net, path)
    code, _, err = run_cli(capsys, "whiten", str(path), "--models", str(tmp_path / "nothing"))
    assert code == 2 and "metamodel not found" in err and "dvc repro" in err and "dvc pull" in err
    for target, message in (
        (str(tmp_path / "absent.pt2"), "model file not found"),
        ("no_such_module_xyz:f", "cannot import"),
        ("just-a-word", "not a .pt2/.pt/.ts file"),
    ):
        code, _, err = run_cli(capsys, "whiten", target, "--models", str(world["models"]), "--trust-code")
        assert code == 2 and message in err and err.count("\n") == 1


def test_parse_answers():
    p = np.full((2, 10), 0.1)
    assert parse_answers(p, "prob", 2, "t").shape == (2, 10)
    assert parse_answers([[3, 1, 2], [0, 9, 8]], "ranking", 2, "t").tolist() == [3, 0]
    assert parse_answers([4, 7], "label", 2, "t").tolist() == [4, 7]
    with pytest.raises(KennenError, match="not probabilities"):
        parse_answers(np.full((2, 10), 0.5), "prob", 2, "t")
    with pytest.raises(KennenError, match="class indices 0..9"):
        parse_answers([4, 12], "label", 2, "t")


def test_torchscript_target(world, tmp_path):
    cfg, net = world["fresh"][1]
    path = tmp_path / "box.pt"
    torch.jit.save(torch.jit.trace(net, torch.zeros(2, 1, 28, 28)), str(path))
    box = load_target(str(path), trust_code=True)
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        assert np.allclose(box(x), net(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_torchs_deprecation_warnings_are_one_line_and_json_stays_json(world, tmp_path, capsys):
    cfg, net = world["fresh"][1]
    path = tmp_path / "box.pt"
    torch.jit.save(torch.jit.trace(net, torch.zeros(2, 1, 28, 28)), str(path))
    code, out, err = run_cli(
        capsys,
        "whiten",
        str(path),
        "--models",
        str(world["models"]),
        "--trust-code",
        "--json",
        "--output-type",
        "logprob",
    )
    assert code == 0 and json.loads(out)["target"] == str(path), err
    assert (
        "warning: FutureWarning: `torch.jit.load` is deprecated. Please switch to `torch.export`." in err.splitlines()
    )
    assert "warnings.warn(" not in err


def test_unsupported_schemes_are_not_told_to_trust_code(capsys, tmp_path):
    for url in ("ftp://example.org/model.pt2", "file:///tmp/model.pt2", "ws://example.org"):
        code, out, err = run_cli(capsys, "whiten", url, "--models", str(tmp_path))
        assert one_line_error(code, out, err) and "unsupported scheme" in err and "--trust-code" not in err, err


@pytest.mark.slow
def test_console_script_is_installed():
    out = subprocess.run(
        [str(Path(sys.executable).parent / "kennen"), "whiten", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0 and "--max-queries" in out.stdout


def test_fixed_batch_program_needs_matching_batch_size(world, tmp_path, capsys):
    cfg, net = world["fresh"][2]
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(4, 1, 28, 28),)), str(path))
    code, _, err = run_cli(capsys, "whiten", str(path), "--models", str(world["models"]))
    assert code == 2 and "--batch-size" in err and err.count("\n") == 1
    code, out, err = run_cli(
        capsys, "whiten", str(path), "--models", str(world["models"]), "--batch-size", "4", "--output-type", "logprob"
    )
    assert code == 0, err


def test_log_probability_answers_are_checked():
    good = np.log(np.full((2, 10), 0.1))
    assert np.allclose(parse_answers(good, "logprob", 2, "t"), good)
    with pytest.raises(KennenError, match="NaN"):
        parse_answers(np.where(np.eye(2, 10) > 0, np.nan, good), "logprob", 2, "t")
    with pytest.raises(KennenError, match="not log-probabilities"):
        parse_answers(np.zeros((2, 10)), "logprob", 2, "t")  # logits, not log-probabilities


def test_kennen_i_on_a_box_that_answers_scores(world, tmp_path, capsys):
    cfg, net = world["fresh"][4]
    path = tmp_path / "box.pt2"
    export(net, path)
    code, out, err = run_cli(
        capsys, "whiten", str(path), "--models", str(world["models"]), "--output-type", "logprob",
        "--method", "kennen-i", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["method"] == "kennen-i" and json.loads(out)["queries"] == 12


def test_a_stale_metamodel_is_a_one_line_error(world, tmp_path, capsys):
    stale = tmp_path / "models"
    stale.mkdir()
    tensors, meta = load_metamodel(world["models"] / "kennen_o")
    save_metamodel(stale / "kennen_o", {k.removeprefix("mlp."): v for k, v in tensors.items()}, meta)  # old layout
    cfg, net = world["fresh"][0]
    export(net, tmp_path / "box.pt2")
    code, _, err = run_cli(
        capsys, "whiten", str(tmp_path / "box.pt2"), "--models", str(stale), "--output-type", "logprob"
    )
    assert code == 2 and "not a metamodel this version can read" in err and err.count("\n") == 1


# --- trust and one-line failures -------------------------------------------------------------------


def write_module(folder: Path, name: str, source: str) -> str:
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def one_line_error(code: int, out: str, err: str) -> bool:
    return code == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1


def test_code_targets_need_trust_code(world, tmp_path, monkeypatch, capsys):
    cfg, net = world["fresh"][1]
    script = tmp_path / "box.pt"
    torch.jit.save(torch.jit.trace(net, torch.zeros(2, 1, 28, 28)), str(script))
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "imported"
    name = write_module(tmp_path, "kennen_t_trusted", f"open({str(marker)!r}, 'w').close()\ndef f(x):\n    return x\n")
    for target, why in ((str(script), "a TorchScript file is its author's code"), (f"{name}:f", "is Python code")):
        code, out, err = run_cli(capsys, "whiten", target, "--models", str(world["models"]))
        assert one_line_error(code, out, err) and why in err and "--trust-code allows it" in err, err
    assert not marker.exists()
    code, _, err = run_cli(capsys, "whiten", str(script), "--models", str(world["models"]), "--trust-code",
                           "--output-type", "logprob")  # fmt: skip
    assert code == 0, err


def test_callables_that_break_on_import_or_exit_are_one_line_errors(world, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = {
        write_module(tmp_path, "kennen_t_syntax", "def f(:\n    pass\n"): "cannot import the callable (SyntaxError",
        write_module(tmp_path, "kennen_t_raises", "raise ValueError('no data here')\n"): "(ValueError: no data here)",
        write_module(tmp_path, "kennen_t_exits", "import sys\nsys.exit(0)\n"): "cannot import the callable (SystemExit",
        write_module(
            tmp_path, "kennen_t_exit_call", "import sys\ndef f(x):\n    sys.exit(0)\n"
        ): "exited (SystemExit: 0)",
        write_module(tmp_path, "kennen_t_raise_exit", "def f(x):\n    raise SystemExit('bye')\n"): "exited (SystemExit",
    }
    for module, message in cases.items():
        code, out, err = run_cli(capsys, "whiten", f"{module}:f", "--models", str(world["models"]), "--trust-code")
        assert one_line_error(code, out, err) and message in err, (module, err)


@pytest.mark.parametrize(
    "argv",
    [
        ["whiten", "box.pt2", "--timeout", "inf"],
        ["whiten", "box.pt2", "--timeout", "nan"],
        ["whiten", "box.pt2", "--timeout", "0"],
        ["whiten", "box.pt2", "--timeout", "-1"],
        ["whiten", "box.pt2", "--timeout", "soon"],
        ["whiten", "box.pt2", "--max-queries", "many"],
        ["whiten", "box.pt2", "--output-type", "logits"],
        ["whiten", "box.pt2", "--min-confidence", "1.5"],
        ["whiten", "box.pt2", "--min-confidence", "nan"],
        ["whiten", "box.pt2", "--defence", "smooth:1"],
        ["whiten", "box.pt2", "--defence", "topk:11"],
        ["whiten", "box.pt2", "--defence", "noise"],
        ["whiten", "box.pt2", "--no-such-option"],
        ["whiten"],
        ["unwhiten"],
        [],
    ],
)
def test_usage_errors_are_one_line(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert one_line_error(code, out, err), err
    assert "--help" in err


def test_help_still_works(capsys):
    code, out, _ = run_cli(capsys, "whiten", "--help")
    assert code == 0 and "--trust-code" in out and "--timeout" in out


def test_malformed_urls_are_one_line_errors(capsys, tmp_path):
    for url in ("http://[::1/", "http:///predict", "https://host:port/predict"):
        code, out, err = run_cli(capsys, "whiten", url, "--models", str(tmp_path))
        assert one_line_error(code, out, err) and "not a valid URL" in err, err


class Trickle(_Local):
    """An HTTP server on 127.0.0.1 that answers one byte every ``pause`` seconds, status line included."""

    def __init__(self, pause: float = 0.2):
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.calls += 1
                self.rfile.read(int(self.headers["Content-Length"]))
                answer = b'HTTP/1.0 200 OK\r\nContent-Length: 30\r\n\r\n{"outputs": [[0.1, 0.1, 0.1]]}'
                try:
                    for byte in answer:
                        self.wfile.write(bytes([byte]))
                        time.sleep(pause)
                except OSError:
                    pass  # the client gave up: that is the point

            def log_message(self, *args):
                pass

        self._serve(Handler)


@pytest.mark.slow
def test_the_timeout_bounds_each_whole_request():
    timeout, retries, backoff = 0.5, 1, 0.05
    with Trickle(pause=0.2) as server:
        box = HttpBox(server.url, timeout=timeout, retries=retries, backoff=backoff)
        start = time.monotonic()
        with pytest.raises(
            KennenError, match=r"no answer after 2 attempts \(TimeoutError: no complete answer within 0.5 s"
        ):
            box(np.zeros((2, 1, 28, 28), dtype=np.float32))
        elapsed = time.monotonic() - start
    assert server.calls == 2
    assert (retries + 1) * timeout <= elapsed < (retries + 1) * timeout + backoff + 0.5


@pytest.mark.slow
def test_a_budget_spent_on_a_failed_attempt_reports_the_servers_answer(world, capsys):
    cfg, net = world["fresh"][5]
    with Server(net, fail_first=100, fail_status=500) as server:
        code, out, err = run_cli(capsys, "whiten", server.url, "--models", str(world["models"]), "--max-queries",
                                 str(N_QUERIES), "--batch-size", str(N_QUERIES), "--retries", "3")  # fmt: skip
        assert server.calls == 1
    assert one_line_error(code, out, err)
    assert "answered HTTP 500" in err and f"would exceed the --max-queries budget of {N_QUERIES}" in err, err


def test_a_box_answering_nan_says_what_that_means(world, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    name = write_module(
        tmp_path, "kennen_t_nan", "import torch\ndef f(x):\n    return torch.full((len(x), 10), float('nan'))\n"
    )
    code, out, err = run_cli(capsys, "whiten", f"{name}:f", "--models", str(world["models"]), "--trust-code")
    assert one_line_error(code, out, err)
    assert "a diverged or broken model outputs NaN" in err and "prune stage drops" in err and "nothing to whiten" in err
