"""``--download``: fetching a dataset's files into ``--data_dir``, safely under ``torchrun`` and kills.

torchvision's ``download_url`` writes the file under its final name while it downloads and skips an existing
file without looking at it; every rank of a ``torchrun`` job builds its data, so two ranks fetched the same file
at once and one read the other's half-written ``.gz``, and a killed download left a partial file that later runs
took as done. Here the first process of each machine downloads (:func:`once_per_machine`), each file under a
temporary name in the folder and renamed into place once its MD5 matches (:func:`fetch`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from mimax.errors import DataError, UserError
from mimax.runtime import distributed


def fetch(files: Sequence[tuple[Sequence[str], str, str]], root: Path) -> None:
    """Each ``(urls, filename, md5)`` of ``files`` as ``root / filename``, from the first of its ``urls`` that
    serves it with MD5 ``md5`` (torchvision's ``download_url``), written under a temporary folder of ``root``
    and renamed into place, so that a killed or concurrent download never leaves a partial file under the real
    name. A file already there with its MD5 is kept; one with another MD5 is refused before anything is
    fetched, not replaced (an interrupted download of an older version, or the user's own file: not provably
    one of ours)."""
    from torchvision.datasets.utils import check_integrity

    missing = []
    for urls, filename, md5 in files:
        target = root / filename
        if not target.is_file():
            missing.append((urls, filename, md5))
        elif not check_integrity(str(target), md5):
            raise DataError(f"--download: {target} exists but is not the file {urls[0]} serves (its MD5 differs: an "
                            "interrupted download, or another file); delete or move it, then run again")
    for urls, filename, md5 in missing:
        _fetch_one(urls, root, filename, md5)


def _fetch_one(urls: Sequence[str], root: Path, filename: str, md5: str) -> None:
    from torchvision.datasets.utils import download_url

    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".mimax-download-", dir=root))
    except OSError as exc:
        raise DataError(f"--download: cannot write to {root} ({exc.strerror or exc})") from None
    try:
        errors = []
        for url in urls:
            try:
                download_url(url, str(work), filename, md5)  # raises when the MD5 does not match
                break
            except Exception as exc:  # noqa: BLE001 -- network errors come in many types (URLError, HTTPError, ...)
                reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
                errors.append(f"{url}: {type(exc).__name__}{': ' + reason if reason else ''}")
        else:
            raise DataError(f"--download: could not fetch {filename} into {root} ({'; '.join(errors)})")
        os.replace(work / filename, root / filename)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the temporary folder this call made


def once_per_machine(prepare: Callable[[], None]) -> None:
    """Run ``prepare`` on the first process of each machine (``LOCAL_RANK`` 0) while the others wait; outside
    ``torchrun`` just run it. A :class:`UserError` on any process is raised on every rank with its message, which
    rank 0 prints (no rank waits forever for one that failed)."""
    if not distributed.is_distributed():
        prepare()
        return
    error = None
    if distributed.local_rank() == 0:
        try:
            prepare()
        except UserError as exc:
            error = str(exc)
    first = next((e for e in distributed.all_gather_object(error) if e), None)
    if first is not None:
        failed = DataError(first)
        failed.every_rank = True  # rank 0 says it
        raise failed
