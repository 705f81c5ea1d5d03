"""cache_dirs: where `auto` caches live, and entries that are written whole or not at all."""

from __future__ import annotations

import pytest

from spear_rl.cache_dirs import cache_folder, write_entry


def test_auto_is_the_user_cache_folder_per_kind(monkeypatch, tmp_path):
    monkeypatch.delenv("SPEAR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder("auto", "models") == tmp_path / "xdg" / "spear-rl" / "models"
    monkeypatch.setenv("SPEAR_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_folder("auto", "models") == tmp_path / "mine" / "models"
    assert cache_folder(str(tmp_path / "x"), "models") == tmp_path / "x"  # a path is the folder
    monkeypatch.setenv("SPEAR_CACHE_DIR", "off")
    assert cache_folder("auto", "models") is None
    assert cache_folder("off", "sft") is None and cache_folder("", "sft") is None


def _writer(text: str):
    def write(folder):
        folder.mkdir()
        (folder / "payload").write_text(text)
        (folder / "done").write_text("")

    return write


def test_an_entry_is_written_whole_or_not_at_all(tmp_path):
    entry = tmp_path / "cache" / "key"
    write_entry(entry, _writer("first"), "done")
    assert (entry / "payload").read_text() == "first"
    # a second writer of the same key (another process, later): the first entry stays
    write_entry(entry, _writer("second"), "done")
    assert (entry / "payload").read_text() == "first"

    def crash(folder):
        folder.mkdir()
        (folder / "payload").write_text("half")
        raise KeyboardInterrupt

    other = tmp_path / "cache" / "other"
    with pytest.raises(KeyboardInterrupt):
        write_entry(other, crash, "done")
    assert sorted(p.name for p in other.parent.iterdir()) == ["key"]  # no half entry, no temp
    # an entry a crash left without its marker is replaced
    other.mkdir()
    (other / "payload").write_text("stale")
    write_entry(other, _writer("fresh"), "done")
    assert (other / "payload").read_text() == "fresh"
