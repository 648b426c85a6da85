"""Sharing a zoo through DVC remotes: a local folder (the default) and S3 (a moto server on 127.0.0.1)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import GIT, REPO, dvc, free_port
from tests.test_pipeline import ran

moto_server = pytest.importorskip("moto.server", reason="the s3 extra and moto are part of `make test`")
boto3 = pytest.importorskip("boto3")
pytestmark = pytest.mark.slow


@pytest.fixture
def s3(monkeypatch):
    """A moto S3 server on a free loopback port with one bucket; yields its endpoint URL."""
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    server = moto_server.ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="zoo")
    yield endpoint
    server.stop()


def _tracked_outputs(root: Path) -> list[str]:
    """Every cached output that dvc.lock records (files and directories)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return sorted({o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])})


def _files(root: Path, path: str) -> dict[str, bytes]:
    p = root / path
    items = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and f.name != ".gitignore")
    return {str(f.relative_to(root)): f.read_bytes() for f in items}


def _clone_and_pull(src: Path, dest: Path, *remote_args: str) -> str:
    subprocess.run(["git", "clone", "-q", str(src), str(dest)], check=True)
    return dvc(dest, "pull", "--with-deps", "zoo_table", *remote_args).stdout


@pytest.mark.parametrize("remote", ["local", "s3"])
def test_push_clone_pull_gives_the_same_zoo_and_retrains_nothing(pipeline_copy, tmp_path, request, remote):
    root = pipeline_copy
    dvc(root, "repro", "zoo_table")  # the zoo: what users share (the whole pipeline is tested in test_pipeline)
    if remote == "local":
        store = tmp_path / "store"
        dvc(root, "remote", "add", "-d", "localstore", str(store))
    else:
        endpoint = request.getfixturevalue("s3")
        dvc(root, "remote", "add", "-d", "s3store", "s3://zoo/kennen")
        dvc(root, "remote", "modify", "s3store", "endpointurl", endpoint)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "zoo"], cwd=root, check=True)
    dvc(root, "push")

    clone = tmp_path / "clone"
    _clone_and_pull(root, clone)
    outputs = _tracked_outputs(root)
    assert "data/zoo/shards/shard-0.safetensors" in outputs
    for path in outputs:
        assert _files(clone, path) == _files(root, path), path
    assert "Data and pipelines are up to date" in dvc(clone, "status", "zoo_table").stdout
    assert ran(dvc(clone, "repro", "zoo_table").stdout) == set()  # nothing retrained, nothing recomputed


def test_unreachable_s3_endpoint_fails_clearly(tmp_path, monkeypatch):
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(k, v)
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "init", "-q")
    (root / "zoo.bin").write_bytes(b"weights")
    dvc(root, "add", "zoo.bin")
    endpoint = f"http://127.0.0.1:{free_port()}"
    dvc(root, "remote", "add", "-d", "s3store", "s3://zoo/kennen")
    dvc(root, "remote", "modify", "s3store", "endpointurl", endpoint)
    proc = dvc(root, "push", check=False, timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert errors and endpoint.split("//")[1] in errors[0]


def test_the_repository_has_a_default_local_remote():
    """`dvc push` works out of the box: the committed config names a local-folder default remote."""

    out = dvc(REPO, "remote", "list").stdout.split()
    assert out[:2] == ["localstore", "../kennen-dvc-store"] or (
        "localstore" in out and any("kennen-dvc-store" in o for o in out)
    )
    assert dvc(REPO, "remote", "default").stdout.strip() == "localstore"


def test_a_fresh_clone_is_told_which_remote_to_configure(tmp_path):
    """``make pull`` checks the default remote first (``kennen.remote``): on a fresh clone whose default store
    does not exist, one line names the remote and its folder and says how to configure one; with the store
    there (or a local URL of one's own) the pull goes ahead."""
    import sys

    clone = tmp_path / "work" / "kennen"
    subprocess.run([*GIT, "clone", "-q", str(REPO), str(clone)], check=True)

    def check() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kennen.remote", str(clone)], capture_output=True, text=True,
                              cwd=REPO)  # fmt: skip

    store = tmp_path / "work" / "kennen-dvc-store"  # where ../../kennen-dvc-store (relative to .dvc/) points
    missing = check()
    assert missing.returncode == 2 and missing.stdout == "" and missing.stderr.count("\n") == 1, missing.stderr
    assert missing.stderr.startswith("error: DVC remote 'localstore' is the folder ")
    assert str(store) in missing.stderr and "dvc remote modify --local localstore url" in missing.stderr
    store.mkdir()
    ok = check()
    assert ok.returncode == 0 and "'localstore'" in ok.stderr
    own = tmp_path / "elsewhere"
    dvc(clone, "remote", "modify", "--local", "localstore", "url", str(own))
    assert check().returncode == 2  # the local override is what counts, and it does not exist either
    own.mkdir()
    assert check().returncode == 0
    dvc(clone, "remote", "default", "--unset")
    nothing = check()
    assert nothing.returncode == 2 and "no default DVC remote" in nothing.stderr
    assert "python -m kennen.remote && $(RUN) dvc pull" in (REPO / "Makefile").read_text()  # what `make pull` runs
