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
