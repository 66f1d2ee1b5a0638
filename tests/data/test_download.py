"""``--download`` against a local HTTP server that serves real IDX ``.gz`` files: torchvision's mirror list and
MD5 sums (``FashionMNIST.mirrors`` / ``.resources``, configuration, not code) point at it."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from image_fixtures import write_idx_set
from torchvision.datasets import FashionMNIST

from mimax.cli import main
from mimax.data import idx
from mimax.errors import DataError


class Mirror(http.server.ThreadingHTTPServer):
    """Serves ``folder`` on 127.0.0.1, ``delay`` seconds per 16 KB sent (a slow network), counting the GETs."""

    def __init__(self, folder: Path, delay: float = 0.0):
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                mirror.gets.append(self.path)
                super().do_GET()

            def copyfile(self, source, outputfile):
                while chunk := source.read(16384):
                    outputfile.write(chunk)
                    time.sleep(mirror.delay)

            def log_message(self, *args):
                pass

        self.handle_error = lambda request, client_address: None  # a client that hung up early (a redirect probe)

        super().__init__(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.delay, self.gets = delay, []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A Fashion-MNIST mirror whose training images (1.6 MB) take about a second to send, the rest instantly."""
    served = tmp_path / "served"
    write_idx_set(served, n_train=2000, n_test=50)
    resources = [(p.name, hashlib.md5(p.read_bytes()).hexdigest()) for p in sorted(served.iterdir())]
    server = Mirror(served, delay=0.01)
    monkeypatch.setattr(FashionMNIST, "mirrors", [server.url])
    monkeypatch.setattr(FashionMNIST, "resources", resources)
    yield server, dict(resources)
    server.shutdown()


def _md5s(root: Path, names) -> dict[str, str | None]:
    return {n: hashlib.md5((root / n).read_bytes()).hexdigest() if (root / n).is_file() else None for n in names}


def test_a_download_is_never_seen_half_written(tmp_path, mirror):
    """Every torchrun rank fetched into the same files and skipped one that existed: a rank read the other's
    half-written .gz ("Compressed file ended before the end-of-stream marker"). Two downloads into one folder
    at once: when each returns, every file is whole; nothing temporary is left."""
    server, md5 = mirror
    root, seen, errors = tmp_path / "data", {}, []

    def download(name: str) -> None:
        try:
            idx._download(root, "FashionMNIST")
            seen[name] = _md5s(root, md5)  # what this caller would read next
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    first = threading.Thread(target=download, args=("first",))
    first.start()
    deadline = time.time() + 10
    while not server.gets and time.time() < deadline:  # the first download is under way
        time.sleep(0.01)
    download("second")
    first.join()
    assert not errors and seen == {"first": md5, "second": md5}, (errors, seen)
    assert sorted(p.name for p in root.iterdir()) == sorted(md5)  # no temporary folder left
    gets = len(server.gets)
    idx._download(root, "FashionMNIST")  # whole files with the right MD5 are kept, not fetched again
    assert len(server.gets) == gets


def test_a_partial_file_is_refused_in_one_line_and_kept(tmp_path, mirror, capsys):
    """A download killed by an older version left a truncated .gz that --download took as done (it never checked
    the MD5): the run failed reading it, with no advice. Now one line says what to do; the file is not touched
    (not provably a download of ours) and the failed fresh run leaves no directory."""
    server, md5 = mirror
    root = tmp_path / "data"
    root.mkdir()
    name = "train-images-idx3-ubyte.gz"
    partial = (tmp_path / "served" / name).read_bytes()[:100_000]
    (root / name).write_bytes(partial)
    out = tmp_path / "run"
    assert main(["train", "--model_name", "SimCLR", "--dataset", "FashionMNIST", "--data_dir", str(root),
                 "--download", "--epochs", "1", "--train_subset", "64", "--num_threads", "1",
                 "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mimax: error: --download: {root / name} exists but is not the file {server.url}{name} serves "
                   "(its MD5 differs: an interrupted download, or another file); delete or move it, then run again")
    assert (root / name).read_bytes() == partial and not out.exists()


def test_a_failed_fetch_leaves_no_file(tmp_path, mirror):
    server, md5 = mirror
    FashionMNIST.resources = [(n, "0" * 32 if n.startswith("t10k-labels") else m) for n, m in md5.items()]
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"--download: could not fetch t10k-labels-idx1-ubyte.gz into .*RuntimeError"):
        idx._download(root, "FashionMNIST")  # served, but not with the MD5 torchvision lists
    assert [p.name for p in root.iterdir()] == ["t10k-images-idx3-ubyte.gz"]  # the one fetched before it, whole
    assert gzip.decompress((root / "t10k-images-idx3-ubyte.gz").read_bytes())[:4] == bytes([0, 0, 8, 3])


RANK_SCRIPT = '''
import hashlib, json, sys
from pathlib import Path
from torchvision.datasets import FashionMNIST
from mimax.data import idx
from mimax.data.download import once_per_machine
from mimax.runtime import distributed

url, root, resources, out = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]), Path(sys.argv[4])
FashionMNIST.mirrors, FashionMNIST.resources = [url], [tuple(r) for r in resources]
distributed.init_from_env("cpu")
once_per_machine(lambda: idx._download(root, "FashionMNIST"))
seen = {n: hashlib.md5((root / n).read_bytes()).hexdigest() for n, _ in resources}  # what this rank reads next
(out / f"rank{distributed.rank()}.json").write_text(json.dumps(seen))
distributed.shutdown()
'''


def test_under_torchrun_one_process_per_machine_downloads_and_the_others_wait(tmp_path, mirror):
    """Every rank fetched every file (8 GETs for 4 files, up to 4 of 6 runs failing on a half-written file)."""
    server, md5 = mirror
    idx._download(tmp_path / "alone", "FashionMNIST")
    alone, server.gets[:] = sorted(server.gets), []  # the requests of one process's download (torchvision probes)
    (tmp_path / "rank.py").write_text(RANK_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(tmp_path / "rank.py"), server.url, str(tmp_path / "data"),
                           json.dumps(sorted(md5.items())), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)] == [md5, md5]
    assert sorted(server.gets) == alone  # one process downloaded, once
