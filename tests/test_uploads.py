"""Uploaded adapter archives: valid ones load, hostile or broken ones are refused before anything is written."""
import io
import zipfile

import pytest

from tara_core.uploads import UploadError, extract_adapter_zip, load_uploaded_set


def zip_folder(folder, prefix="") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + str(f.relative_to(folder)))
    return buf.getvalue()


def test_valid_uploads_load_like_folders(bert, tmp_path):
    folders = [extract_adapter_zip(zip_folder(a, prefix=f"{a.name}/" if i else ""), tmp_path, f"u{i}")
               for i, a in enumerate(bert.adapters)]
    uploaded = load_uploaded_set(folders, ["u0", "u1", "u2"])
    assert len(uploaded) == 3 and all(tmp_path in f.parents for f in folders)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("payload, match", [
    (b"not a zip at all", "not a zip"),
    (_zip({"../evil.txt": b"x"}), "outside"),
    (_zip({"/abs/evil.txt": b"x"}), "outside"),
    (_zip({"readme.txt": b"x"}), "no adapter_config.json"),
])
def test_hostile_or_wrong_archives(tmp_path, payload, match):
    dest = tmp_path / "session"
    with pytest.raises(UploadError, match=match):
        extract_adapter_zip(payload, dest, "a")
    assert not (tmp_path / "evil.txt").exists()


def test_size_limits(tmp_path):
    with pytest.raises(UploadError, match="upload limit"):
        extract_adapter_zip(b"0" * 2000, tmp_path, "a", max_bytes=1000)
    big = _zip({"adapter_config.json": b"{}" * 5000})
    with pytest.raises(UploadError, match="unpacks to more"):
        extract_adapter_zip(big, tmp_path, "b", max_unpacked=1000)


def test_corrupt_adapter_in_a_valid_zip(bert, tmp_path):
    folder = bert.adapters[0]
    members = {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file()}
    members["adapter_model.safetensors"] = members["adapter_model.safetensors"][:100]
    good = extract_adapter_zip(zip_folder(bert.adapters[1]), tmp_path, "good")
    bad = extract_adapter_zip(_zip(members), tmp_path, "bad")
    with pytest.raises(Exception, match="bad|corrupt|truncated"):
        load_uploaded_set([good, bad], ["good", "bad"])


def test_same_name_twice_is_refused(bert, tmp_path):
    data = zip_folder(bert.adapters[0])
    extract_adapter_zip(data, tmp_path, "a")
    with pytest.raises(UploadError, match="already exists"):
        extract_adapter_zip(data, tmp_path, "a")


def _crc_broken(bert) -> bytes:
    data = bytearray(zip_folder(bert.adapters[0]))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("adapter_model.safetensors")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 10] ^= 0xFF  # flip a byte of the stored member: its CRC no longer matches
    return bytes(data)


def _flagged(members: dict[str, bytes], flag: int = 0, compress_type: int | None = None) -> bytes:
    raw = bytearray(_zip(members))
    zf = zipfile.ZipFile(io.BytesIO(bytes(raw)))
    for info in zf.infolist():  # patch the central directory entry: general-purpose flags / method
        central = raw.find(b"PK\x01\x02" + raw[zf.start_dir + 4:zf.start_dir + 6], zf.start_dir)
        break
    if flag:
        raw[central + 8] |= flag
    if compress_type is not None:
        raw[central + 10:central + 12] = compress_type.to_bytes(2, "little")
    return bytes(raw)


@pytest.mark.parametrize("make, match", [
    (lambda b: _crc_broken(b), "damaged"),
    (lambda b: _flagged({"adapter_config.json": b"{}"}, flag=0x1), "encrypted"),
    (lambda b: _flagged({"adapter_config.json": b"{}"}, compress_type=99), "unsupported compression"),
    (lambda b: _zip({".": b"x", "adapter_config.json": b"{}"}), "empty or '.' name"),
    (lambda b: _zip({"a": b"x", "a/b": b"y"}), "both a file and a folder"),
    (lambda b: _zip({f"f{i}.txt": b"" for i in range(100)}), "members in the archive"),
])
def test_hostile_archives_are_refused_and_leave_nothing(bert, tmp_path, make, match):
    dest = tmp_path / "session"
    with pytest.raises(UploadError, match=match):
        extract_adapter_zip(make(bert), dest, "a")
    assert not dest.exists() or list(dest.iterdir()) == []


def test_zip_bomb_is_refused_before_unpacking(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("adapter_config.json", "{}")
        zf.writestr("adapter_model.safetensors", b"\0" * 50_000_000)  # 50 MB of zeros, ~50 KB packed
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(UploadError, match="zip bomb"):
        extract_adapter_zip(buf.getvalue(), tmp_path / "s", "a")
    assert not (tmp_path / "s").exists() or list((tmp_path / "s").iterdir()) == []


@pytest.mark.parametrize("name", ["../up", "a/b", ".hidden", ""])
def test_upload_names_are_single_safe_components(bert, tmp_path, name):
    with pytest.raises(ValueError, match="cannot be used as a file name"):
        extract_adapter_zip(zip_folder(bert.adapters[0]), tmp_path / "s", name)
    assert not (tmp_path / "up").exists()


def test_upload_area_cleans_sessions_and_dead_servers(tmp_path):
    import gc
    import os
    import subprocess
    import sys

    from tara_core.uploads import SessionHolder, UploadArea

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"server-{int(dead.stdout)}" / "session-x"
    stale.mkdir(parents=True)
    area = UploadArea(tmp_path)
    assert not stale.parent.exists()  # a server that is gone leaves nothing
    holder = SessionHolder()
    folder = area.session_folder(holder)
    (folder / "f").write_text("x")
    del holder
    gc.collect()
    assert not folder.exists()  # the session ended: its uploads went with it
    assert area.folder == tmp_path / f"server-{os.getpid()}"
