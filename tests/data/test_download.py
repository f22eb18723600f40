"""Downloads against a local HTTP server on 127.0.0.1: success, checksum, resume, archives."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from shiftpool.data import DownloadError, download_file, extract_archive, md5_of_file

from .conftest import FileServer

PAYLOAD = bytes(range(256)) * 4000  # 1,024,000 bytes: several read chunks
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_success(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/f.bin"] = PAYLOAD
    dest = download_file(file_server.url("/f.bin"), tmp_path / "sub" / "f.bin", MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]


def test_wrong_checksum_leaves_no_file(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/f.bin"] = PAYLOAD
    with pytest.raises(DownloadError, match=r"f\.bin.*checksum mismatch.*expected 0{32}"):
        download_file(file_server.url("/f.bin"), tmp_path / "f.bin", "0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_transfer_resumes_with_range(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/f.bin"] = PAYLOAD
    file_server.cut_after["/f.bin"] = 300_000
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match=r"closed early[\s\S]*kept at .*f\.bin\.part"):
        download_file(file_server.url("/f.bin"), dest, MD5, progress=False)
    assert not dest.exists()
    assert (tmp_path / "f.bin.part").stat().st_size == 300_000

    download_file(file_server.url("/f.bin"), dest, MD5, progress=False)
    assert md5_of_file(dest) == MD5
    assert file_server.requests == [("/f.bin", None), ("/f.bin", "bytes=300000-")]
    assert not (tmp_path / "f.bin.part").exists()


def test_server_ignoring_range_restarts(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/f.bin"] = PAYLOAD
    file_server.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    download_file(file_server.url("/f.bin"), tmp_path / "f.bin", MD5, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_complete_part_is_verified(file_server: FileServer, tmp_path: Path) -> None:
    """A whole ``.part`` left by a crash before the rename: the server answers 416."""
    file_server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    download_file(file_server.url("/f.bin"), tmp_path / "f.bin", MD5, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_mirrors_tried_in_order(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/mirror/f.bin"] = PAYLOAD
    urls = [file_server.url("/gone/f.bin"), file_server.url("/mirror/f.bin")]
    download_file(urls, tmp_path / "f.bin", MD5, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match=r"HTTP 404[\s\S]*HTTP 404"):
        download_file(urls[:1] * 2, tmp_path / "g.bin", MD5, progress=False)


def test_plain_progress_without_tqdm(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError("no tqdm")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    file_server.files["/f.bin"] = PAYLOAD
    download_file(file_server.url("/f.bin"), tmp_path / "f.bin", MD5, progress=True)
    assert "100.0%" in capsys.readouterr().err


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_extract_archive(tmp_path: Path) -> None:
    (tmp_path / "a.tar.gz").write_bytes(_tar_gz({"top/x.txt": b"x", "top/sub/y.txt": b"y"}))
    placed = extract_archive(tmp_path / "a.tar.gz", tmp_path / "out")
    assert placed == [tmp_path / "out" / "top"]
    assert (tmp_path / "out" / "top" / "sub" / "y.txt").read_bytes() == b"y"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["top"]  # no staging left
    (tmp_path / "evil.tar.gz").write_bytes(_tar_gz({"../escape.txt": b"!"}))
    with pytest.raises(DownloadError, match="unsafe path"):
        extract_archive(tmp_path / "evil.tar.gz", tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_extract_archive_checks_md5_and_never_replaces(tmp_path: Path) -> None:
    data = _tar_gz({"top/keep.txt": b"archive", "top/sub/new.txt": b"new", "other": b"o",
                    "clash/x.txt": b"x"})  # fmt: skip
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(data)
    out = tmp_path / "out"
    (out / "top").mkdir(parents=True)
    (out / "top" / "keep.txt").write_bytes(b"mine")
    (out / "clash").write_bytes(b"a file where the archive has a folder")
    with pytest.raises(DownloadError, match=r"a\.tar\.gz has md5 [0-9a-f]{32}, but the published "
                                            r"a\.tar\.gz has md5 0{32}; refusing to unpack"):
        extract_archive(archive, out, md5="0" * 32)
    assert sorted(p.name for p in out.iterdir()) == ["clash", "top"]  # nothing unpacked
    added = extract_archive(archive, out, md5=hashlib.md5(data).hexdigest())
    assert added == [out / "other", out / "top" / "sub"]
    assert (out / "top" / "keep.txt").read_bytes() == b"mine"
    assert (out / "top" / "sub" / "new.txt").read_bytes() == b"new"
    assert (out / "clash").read_bytes() == b"a file where the archive has a folder"
    assert sorted(p.name for p in out.iterdir()) == ["clash", "other", "top"]  # no staging left
