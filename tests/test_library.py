"""The slide library (index/): FAISS + SQLite in one folder. No torch, no napari: random clustered vectors."""

from __future__ import annotations

import io
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_pathalign.index import Hit, Library, LibraryError, LibraryInfo, SlideRecord
from napari_pathalign.index import library as library_module
from napari_pathalign.index import vectors as vectors_module

ROOT = Path(__file__).resolve().parents[1]
DIM = 32
MODEL = dict(model="embedded-r", model_hash="m0d31", encoder="embedded", encoder_hash="e4c0", dim=DIM)
LABELS = ("adenocarcinoma", "normal", "lymphoma", "melanoma")
SITES = ("colon", "lung", "skin", "node")
NASTY = 'Robert\'); DROP TABLE slides;-- 50% "quoted" a_b \\ SELECT * FROM meta'


def tiny_png(seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def clustered(n: int, seed: int = 0, noise: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n, DIM) unit float32, cluster index (n,)): one cluster per label."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(LABELS), DIM))
    cluster = np.arange(n) % len(LABELS)
    vecs = centres[cluster] + noise * rng.normal(size=(n, DIM))  # (n, DIM)
    return (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32), cluster


def make_records(n: int, seed: int = 0, start: int = 0, report_every: int = 2) -> list[SlideRecord]:
    vecs, cluster = clustered(n, seed)
    rng = np.random.default_rng(seed + 1)
    records = []
    for i in range(n):
        j = start + i
        has_report = j % report_every == 0
        report_vec = vecs[i] + 0.02 * rng.normal(size=DIM) if has_report else None  # text near its slide
        records.append(SlideRecord(
            path=f"/slides/case_{j:04d}.svs", fingerprint=f"sha256:{j:08x}", format="svs", mpp=0.25,
            width=40_000 + j, height=30_000, thumbnail_png=tiny_png(j), vector=vecs[i],
            report=f"Case {j}: {LABELS[cluster[i]]} of the {SITES[cluster[i]]}." if has_report else None,
            report_vector=report_vec, label=LABELS[cluster[i]], site=SITES[cluster[i]],
            features_path=f"/cache/case_{j:04d}.h5", extra={"case": j, "stain": "H&E"},
        ))  # fmt: skip
    return records


@pytest.fixture
def folder(tmp_path) -> Path:
    return tmp_path / "library"


@pytest.fixture
def lib(folder):
    with Library.create(folder, **MODEL) as library:
        library.add(make_records(40))
        yield library


def index_ids(library: Library, target: str) -> set[int]:
    """Ids reachable through FAISS: search for everything with an exhaustive k."""
    if len(library.vectors(target)[0]) == 0:
        return set()
    query = np.ones(DIM, np.float32)
    return {h.id for h in library.search(query, k=len(library) + 5, target=target)}


# ---- create, add, search -------------------------------------------------------------------


def test_slide_search_finds_the_slide_itself_first(lib):
    records = make_records(40)
    for i in (0, 7, 21, 39):
        hits = lib.search(records[i].vector, k=5)
        assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
        assert hits[0].fingerprint == records[i].fingerprint and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
        assert hits[0].target == "slides" and hits[0].region_xywh is None
        assert hits[0].thumbnail_png == records[i].thumbnail_png
        assert hits[0].features_path == records[i].features_path
        # clustered data: the neighbours share the slide's label
        assert {h.label for h in hits} == {records[i].label}


def test_reports_and_text_to_slides(lib):
    records = make_records(40)
    with_report = [r for r in records if r.report is not None]
    assert lib.info().reports_count == len(with_report) == 20
    for rec in with_report[:5]:
        image_to_text = lib.search(rec.vector, k=3, target="reports")
        assert image_to_text[0].fingerprint == rec.fingerprint and image_to_text[0].report == rec.report
        assert all(h.target == "reports" and h.report is not None for h in image_to_text)
        text_to_slides = lib.search(rec.report_vector, k=3, target="slides")
        assert text_to_slides[0].fingerprint == rec.fingerprint
    # every report hit is a slide that has a report
    all_reports = lib.search(records[1].vector, k=100, target="reports")
    assert {h.fingerprint for h in all_reports} == {r.fingerprint for r in with_report}


def test_filters(lib):
    query = make_records(40)[0].vector
    colon = lib.search(query, k=100, filters={"site": "colon"})
    assert len(colon) == 10 and {h.site for h in colon} == {"colon"}
    lymph = lib.search(query, k=3, filters={"label": "lymphoma", "site": "skin"})
    assert len(lymph) == 3 and {h.label for h in lymph} == {"lymphoma"}
    assert [h.path for h in lib.search(query, k=5, filters={"path_contains": "case_0013"})] == ["/slides/case_0013.svs"]
    found = lib.search(query, k=100, target="reports", filters={"report_contains": "LYMPHOMA of"})  # case-insensitive
    assert found and len(found) == 10 and all("lymphoma of" in h.report for h in found)
    assert lib.search(query, k=5, filters={"label": "no such label"}) == []
    assert lib.search(query, k=5, filters={"path_contains": "%"}) == []  # % is a literal, not a wildcard
    assert lib.search(query, k=5, filters={"path_contains": "case_00_3"}) == []  # so is _
    assert len(lib.search(query, k=100, filters={})) == 40
    with pytest.raises(ValueError, match="allowed keys: label, site, report_contains, path_contains"):
        lib.search(query, filters={"diagnosis": "x"})
    with pytest.raises(ValueError, match="label"):
        lib.search(query, filters={"label": 3})


def test_large_filtered_subset_goes_through_faiss(lib, monkeypatch):
    query = make_records(40)[5].vector
    exact = lib.search(query, k=6, filters={"site": "lung"})
    monkeypatch.setattr(library_module, "FILTER_EXACT_MAX", 0)
    via_faiss = lib.search(query, k=6, filters={"site": "lung"})
    assert [h.id for h in via_faiss] == [h.id for h in exact]
    assert [h.score for h in via_faiss] == pytest.approx([h.score for h in exact], abs=1e-5)


def test_text_with_quotes_and_sql_is_stored_and_found_intact(folder):
    with Library.create(folder, **MODEL) as library:
        rec = make_records(1)[0]
        rec.report, rec.label, rec.path = NASTY, NASTY, "/slides/it's 100%_[x].svs"
        rec.extra = {"note": NASTY}
        (row_id,) = library.add([rec])
        got = library.get(row_id)
        assert (got.report, got.label, got.path, got.extra["note"]) == (NASTY, NASTY, rec.path, NASTY)
        for filters in ({"report_contains": "'); DROP TABLE"}, {"report_contains": '50% "quoted" a_b \\'},
                        {"label": NASTY}, {"path_contains": "it's 100%_["}):  # fmt: skip
            assert [h.id for h in library.search(rec.vector, k=5, target="reports", filters=filters)] == [row_id]
        assert len(library) == 1


def test_majority_vote():
    def hit(label, score):
        return Hit(id=0, score=score, rank=1, path="p", fingerprint="f", label=label, site="colon", report=None,
                   thumbnail_png=b"", features_path=None, target="slides")  # fmt: skip

    hits = [hit("a", 0.9), hit("b", 0.8), hit("a", 0.7), hit(None, 0.6), hit("c", 0.5)]
    assert Library.majority_vote(hits) == ("a", pytest.approx(2 / 5), {"a": 2, "b": 1, "c": 1})
    assert Library.majority_vote(hits, field="site") == ("colon", 1.0, {"colon": 5})
    assert Library.majority_vote([hit("a", 0.2), hit("b", 0.9)])[0] == "b"  # tie: larger score wins
    assert Library.majority_vote([hit(None, 0.5)]) == (None, 0.0, {})
    assert Library.majority_vote([]) == (None, 0.0, {})
    with pytest.raises(ValueError, match="not a Hit field"):
        Library.majority_vote(hits, field="diagnosis")


def test_majority_vote_on_real_hits(lib):
    rec = make_records(40)[2]
    label, agreement, counts = Library.majority_vote(lib.search(rec.vector, k=5))
    assert label == rec.label and agreement == 1.0 and counts == {rec.label: 5}


def test_k_bounds_and_empty_library(folder):
    with Library.create(folder, **MODEL) as library:
        query = make_records(1)[0].vector
        assert library.search(query, k=5) == [] and library.search(query, k=5, target="reports") == []
        assert library.search(query, k=5, filters={"label": "normal"}) == []
        assert len(library) == 0 and library.vectors()[1].shape == (0, DIM)
        library.add(make_records(3))
        assert len(library.search(query, k=50)) == 3
        for bad in (0, -1, 2.5, True):
            with pytest.raises(ValueError, match="k must be a positive integer"):
                library.search(query, k=bad)
        with pytest.raises(ValueError, match="target"):
            library.search(query, target="images")
        with pytest.raises(ValueError, match=r"shape \(16,\); expected \(32,\)"):
            library.search(np.ones(16), k=1)


# ---- update, remove, reopen ------------------------------------------------------------------


def test_same_fingerprint_updates_the_row(lib):
    records = make_records(40)
    old = records[4]
    new = make_records(1, seed=99)[0]
    new.fingerprint, new.label, new.report, new.report_vector = old.fingerprint, "revised", None, None
    (old_id,) = [h.id for h in lib.search(old.vector, k=1)]
    assert lib.add([new]) == [old_id]
    assert len(lib) == 40 and lib.info().reports_count == 19
    assert lib.search(new.vector, k=1)[0].id == old_id
    assert lib.search(old.vector, k=1)[0].id != old_id  # the old vector is gone from the index
    got = lib.get(old_id)
    assert got.label == "revised" and got.report is None and np.allclose(got.vector, new.vector, atol=1e-6)
    assert old_id not in index_ids(lib, "reports")
    # a batch naming one fingerprint twice keeps the last
    twice = make_records(2, seed=5, start=500)
    twice[1].fingerprint = twice[0].fingerprint
    ids = lib.add(twice)
    assert ids[0] == ids[1] and lib.get(ids[0]).path == twice[1].path and len(lib) == 41


def test_remove_by_id_and_fingerprint(lib):
    records = make_records(40)
    ids = lib.vectors()[0]
    assert lib.remove([int(ids[0]), records[1].fingerprint]) == [int(ids[0]), int(ids[1])]
    assert len(lib) == 38 and index_ids(lib, "slides") == set(ids[2:].tolist())
    assert int(ids[0]) not in index_ids(lib, "reports")
    assert lib.search(records[0].vector, k=1)[0].id != ids[0]
    with pytest.raises(LibraryError, match="nothing was removed"):
        lib.remove([int(ids[2]), "sha256:not-there"])
    assert len(lib) == 38
    with pytest.raises(KeyError):
        lib.get(int(ids[0]))
    # ids are never reused: a later slide cannot inherit a removed slide's id
    lib.remove([int(ids[-1])])
    (new_id,) = lib.add(make_records(1, seed=7, start=900))
    assert new_id > ids.max()


def test_reopen_keeps_everything(folder):
    records = make_records(12)
    with Library.create(folder, **MODEL) as library:
        ids = library.add(records)
        ids_before, vecs_before = library.vectors()
    with Library.open(folder) as library:
        assert library.repaired is None and len(library) == 12
        ids_after, vecs_after = library.vectors()
        assert np.array_equal(ids_before, ids_after) and np.array_equal(vecs_before, vecs_after)
        got = library.get(ids[2])
        rec = records[2]
        assert (got.path, got.fingerprint, got.format, got.mpp, got.width, got.height) == (
            rec.path, rec.fingerprint, rec.format, rec.mpp, rec.width, rec.height)  # fmt: skip
        assert got.thumbnail_png == rec.thumbnail_png and got.extra == rec.extra and got.id == ids[2]
        assert got.report == rec.report
        assert np.allclose(got.report_vector, rec.report_vector / np.linalg.norm(rec.report_vector))
        assert got.added and library.get(rec.fingerprint).id == ids[2]
        assert library.search(rec.vector, k=1)[0].id == ids[2]
        library.check_model(**MODEL)


def test_vectors_are_renormalised_and_bad_ones_refused(folder):
    with Library.create(folder, **MODEL) as library:
        rec = make_records(1)[0]
        rec.vector = rec.vector * 7.0
        library.add([rec])
        assert np.linalg.norm(library.vectors()[1][0]) == pytest.approx(1.0, abs=1e-6)
        for bad, match in ((np.zeros(DIM), "all zeros"), (np.full(DIM, np.nan), "NaN"), (np.ones(DIM + 1), "shape")):
            batch = make_records(3, start=10)
            batch[2].vector = bad
            with pytest.raises(ValueError, match=match):
                library.add(batch)
            assert len(library) == 1  # checked before anything is written
        batch = make_records(1, start=20)
        batch[0].thumbnail_png = b"GIF89a"
        with pytest.raises(ValueError, match="PNG"):
            library.add(batch)
        batch = make_records(1, start=22)
        batch[0].report = None
        with pytest.raises(ValueError, match="report_vector given without report"):
            library.add(batch)
        with pytest.raises(ValueError, match="list"):
            library.add(make_records(1)[0])


# ---- index types and info --------------------------------------------------------------------


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf"])
def test_index_type_overrides(folder, index_type):
    records = make_records(300, report_every=3)
    with Library.create(folder, **MODEL, index_type=index_type) as library:
        library.add(records)
        info = library.info()
        assert info.index_type == index_type and info.requested_index_type == index_type
        assert index_type in info.index_reason and "requested" in info.index_reason
        for i in (0, 150, 299):
            assert library.search(records[i].vector, k=3)[0].fingerprint == records[i].fingerprint
        library.remove([records[0].fingerprint, records[1].fingerprint])  # hnsw: rebuilt from stored vectors
        library.add([make_records(1, seed=3, start=1000)[0]])
        updated = records[5]
        updated.vector = make_records(1, seed=4)[0].vector
        library.add([updated])
        assert index_ids(library, "slides") == set(library.vectors()[0].tolist())
        assert library.search(updated.vector, k=1)[0].fingerprint == updated.fingerprint
    with Library.open(folder) as library:
        assert library.repaired is None and library.info().index_type == index_type and len(library) == 299


def test_auto_picks_exact_then_ivf(folder, monkeypatch):
    records = make_records(400)
    with Library.create(folder, **MODEL) as library:
        library.add(records[:50])
        info = library.info()
        assert info.index_type == "flat" and "EXACT_MAX" in info.index_reason and info.requested_index_type == "auto"
        monkeypatch.setattr(vectors_module, "EXACT_MAX", 100)
        library.add(records[50:])
        info = library.info()
        assert info.index_type == "ivf" and "> EXACT_MAX 100" in info.index_reason and "nlist" in info.index_reason
        found = sum(library.search(r.vector, k=1)[0].fingerprint == r.fingerprint for r in records[::10])
        assert found == len(records[::10])
    with Library.open(folder) as library:
        assert library.repaired is None and library.info().index_type == "ivf"


def test_info(lib, folder):
    info = lib.info()
    assert isinstance(info, LibraryInfo)
    assert (info.count, info.reports_count, info.dim) == (40, 20, DIM)
    assert (info.model, info.encoder) == ("embedded-r", "embedded")
    assert (info.model_hash, info.encoder_hash, info.schema_version) == ("m0d31", "e4c0", 1)
    assert info.path == str(folder) and info.created.endswith("+00:00") and info.repaired is None
    assert info.size_bytes >= sum(p.stat().st_size for p in folder.iterdir()) > 40 * DIM * 4
    assert "40 slides" in repr(lib)


def test_search_from_another_thread(lib):
    """napari workers search off the main thread."""
    out = []
    worker = threading.Thread(target=lambda: out.append(lib.search(make_records(1)[0].vector, k=2)))
    worker.start()
    worker.join()
    assert len(out[0]) == 2


# ---- bad input ---------------------------------------------------------------------------------


def test_not_a_library(tmp_path):
    with pytest.raises(LibraryError, match="does not exist.*Library.create"):
        Library.open(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(LibraryError, match="library.sqlite is missing"):
        Library.open(tmp_path)
    with pytest.raises(LibraryError, match="not empty"):
        Library.create(tmp_path, **MODEL)
    assert (tmp_path / "notes.txt").read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["notes.txt"]
    with pytest.raises(LibraryError, match="is a file"):
        Library.create(tmp_path / "notes.txt", **MODEL)
    assert issubclass(LibraryError, ValueError)


def test_create_refuses_an_existing_library_and_bad_settings(folder):
    Library.create(folder, **MODEL).close()
    with pytest.raises(LibraryError, match="already holds a slide library.*Library.open"):
        Library.create(folder, **MODEL)
    with pytest.raises(ValueError, match="index_type 'annoy'"):
        Library.create(folder.parent / "other", **MODEL | {"index_type": "annoy"})
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        Library.create(folder.parent / "other", **MODEL | {"dim": 0})
    assert not (folder.parent / "other").exists()


def test_open_or_create(folder):
    with Library.open_or_create(folder, **MODEL) as library:
        library.add(make_records(2))
    with Library.open_or_create(folder, **MODEL) as library:
        assert len(library) == 2
    with pytest.raises(LibraryError, match="differ in model_hash"):
        Library.open_or_create(folder, **MODEL | {"model_hash": "other"})


def test_check_model_names_both_sides(lib):
    lib.check_model(**MODEL)
    with pytest.raises(LibraryError) as err:
        lib.check_model(**MODEL | {"encoder": "uni", "encoder_hash": "u1", "dim": 1024})
    message = str(err.value)
    assert "'embedded'" in message and "'uni'" in message and "e4c0" in message and "u1" in message
    assert "dim 32" in message and "dim 1024" in message and "encoder, encoder_hash, dim" in message


def test_newer_schema_is_refused(folder):
    Library.create(folder, **MODEL).close()
    with sqlite3.connect(folder / "library.sqlite") as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", ("99", "schema_version"))
        conn.execute("ALTER TABLE slides RENAME COLUMN site TO organ")  # a future layout
    conn.close()
    with pytest.raises(LibraryError, match="newer napari-pathalign.*schema version 99.*upgrade napari-pathalign"):
        Library.open(folder)


@pytest.mark.parametrize("damage", ["garbage", "empty", "html"])
def test_corrupt_database_is_refused_and_left_untouched(lib, folder, damage):
    lib.close()
    db = folder / "library.sqlite"
    content = {"garbage": os.urandom(4096), "empty": b"", "html": b"<html>not a database</html>" * 100}[damage]
    db.write_bytes(content)
    with pytest.raises(LibraryError, match="not a readable slide-library database|lacks library metadata") as err:
        Library.open(folder)
    assert "library.sqlite" in str(err.value)
    assert db.read_bytes() == content


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing", "stale", "other_dim"])
def test_damaged_index_is_rebuilt_from_the_database(folder, damage):
    records = make_records(30)
    with Library.create(folder, **MODEL) as library:
        library.add(records[:20])
        shutil.copy(folder / "slides.faiss", folder / "old.faiss")
        library.add(records[20:])
    index = folder / "slides.faiss"
    if damage == "truncated":
        index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    elif damage == "garbage":
        index.write_bytes(os.urandom(index.stat().st_size))
    elif damage == "missing":
        index.unlink()
    elif damage == "stale":  # killed between the database commit and the index write
        os.replace(folder / "old.faiss", index)
    else:
        other = folder.parent / "other"
        Library.create(other, **MODEL | {"dim": 8}).close()
        shutil.copy(other / "slides.faiss", index)
    with pytest.warns(UserWarning, match="slides.faiss .*rebuilt from the 30 vectors"):
        library = Library.open(folder)
    with library:
        assert "slides.faiss" in library.repaired and "reports.faiss" not in library.repaired
        assert library.info().repaired == library.repaired
        assert index_ids(library, "slides") == set(library.vectors()[0].tolist())
        assert library.search(records[25].vector, k=1)[0].fingerprint == records[25].fingerprint
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Library.open(folder) as library:  # the rebuilt file was saved: nothing to repair now
            assert library.repaired is None


def test_batch_writes_the_index_files_once(folder, monkeypatch):
    records = make_records(12)
    writes = []
    real_write = vectors_module.VectorIndex.write

    def counted_write(self, path):
        writes.append(path)
        real_write(self, path)

    monkeypatch.setattr(vectors_module.VectorIndex, "write", counted_write)
    with Library.create(folder, **MODEL) as library:
        writes.clear()
        with library.batch():
            for rec in records[:10]:
                library.add([rec])
            library.remove([records[0].fingerprint])
            assert writes == [] and library.search(records[9].vector, k=1)[0].fingerprint == records[9].fingerprint
        assert sorted(p.name for p in writes) == ["reports.faiss", "slides.faiss"]
        library.add(records[10:])  # outside a batch: written at once
        assert len(writes) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Library.open(folder) as library:
            assert library.repaired is None and len(library) == 11


def test_index_write_failure_is_reported_and_recovered(folder, monkeypatch):
    records = make_records(6)
    with Library.create(folder, **MODEL, index_type="hnsw") as library:
        library.add(records[:4])

        def disk_full(self, path):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(vectors_module.VectorIndex, "write", disk_full)
        updated = records[0]
        updated.vector = make_records(1, seed=5)[0].vector  # an HNSW update: needs a rebuild
        with pytest.raises(LibraryError, match="saved, but the index files could not be written.*No space left"):
            library.add([updated, records[4]])
        assert len(library) == 5 and library.search(updated.vector, k=1)[0].fingerprint == updated.fingerprint
        with pytest.warns(UserWarning, match="could not save"):
            reopened = Library.open(folder)  # cannot save the repair either: repaired in memory
        with reopened:
            assert "could not save" in reopened.repaired
            assert reopened.search(updated.vector, k=1)[0].fingerprint == updated.fingerprint
        monkeypatch.undo()
    with pytest.warns(UserWarning, match="rebuilt"):
        Library.open(folder).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Library.open(folder) as library:
            assert library.repaired is None and len(library) == 5


def test_closed_library_says_so(lib):
    lib.close()
    lib.close()  # twice is fine
    with pytest.raises(LibraryError, match="closed"):
        lib.search(np.ones(DIM), k=1)
    assert "closed" in repr(lib)


# ---- permissions ------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_folder_and_files_are_private(lib, folder):
    lib.add(make_records(3, start=100))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["library.sqlite", "reports.faiss", "slides.faiss"]
    for name in files:
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_existing_empty_folder_is_made_private(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    Library.create(folder, **MODEL).close()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


# ---- kill -9 ------------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from tests.test_library import Library, make_records
    folder, start, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if mode.startswith("between"):  # die after the database commit, before the index file is written
        import os, signal
        from napari_pathalign.index import vectors
        vectors.VectorIndex.write = lambda self, path: os.kill(os.getpid(), signal.SIGKILL)
    lib = Library.open(folder)
    if mode == "batch":
        lib.batch().__enter__()
    if mode == "between-update":  # same fingerprint as case 0, new vector
        lib.add(make_records(1, seed=start, start=0))
    for i, rec in enumerate(make_records(3000, seed=start, start=start)):
        (row_id,) = lib.add([rec])
        print(rec.fingerprint, flush=True)
    """
)


def _run_child(folder: Path, start: int, mode: str, kill_after: int | None) -> list[str]:
    """Start a child adding slides one by one; SIGKILL it after ``kill_after`` lines. Returns its output."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT)), str(folder), str(start), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    done = []
    try:
        if kill_after is not None:
            for line in child.stdout:
                done.append(line.strip())
                if len(done) >= kill_after:
                    break
            time.sleep(0.003 * kill_after)  # land somewhere inside a later add
            os.kill(child.pid, signal.SIGKILL)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    done += [line for line in out.split("\n") if line]
    assert child.returncode == -signal.SIGKILL, err[-2000:]
    return done


def _assert_consistent(folder: Path, acknowledged: list[str]) -> Library:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the repair message may or may not be there
        library = Library.open(folder)
    with sqlite3.connect(folder / "library.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    ids, vecs = library.vectors()
    assert len(ids) == len(library)
    assert index_ids(library, "slides") == set(ids.tolist())
    assert index_ids(library, "reports") == set(library.vectors("reports")[0].tolist())
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    fingerprints = set()
    for row_id in ids:
        rec = library.get(int(row_id))  # every row complete
        case = int(rec.fingerprint.split(":")[1], 16)
        assert rec.path == f"/slides/case_{case:04d}.svs" and rec.thumbnail_png[:4] == b"\x89PNG"
        assert (rec.report is None) == (rec.report_vector is None) == (case % 2 == 1)
        assert rec.extra == {"case": case, "stain": "H&E"}
        fingerprints.add(rec.fingerprint)
    assert set(acknowledged) <= fingerprints  # every add that returned survived
    assert library.search(vecs[-1], k=1)[0].id == ids[-1]
    return library


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize("mode", ["loop", "batch"])
def test_kill_9_during_adds_leaves_a_consistent_library(folder, mode):
    Library.create(folder, **MODEL).close()
    acknowledged = []
    for round_, kill_after in enumerate((15, 40, 25)):
        acknowledged += _run_child(folder, start=10_000 * (round_ + 1), mode=mode, kill_after=kill_after)
        library = _assert_consistent(folder, acknowledged)
        assert len(library) >= len(acknowledged)
        library.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_kill_9_between_commit_and_index_write_is_repaired(folder):
    with Library.create(folder, **MODEL) as library:
        library.add(make_records(5))
    acknowledged = _run_child(folder, start=100, mode="between", kill_after=None)
    assert acknowledged == []  # died inside its first add, after the commit
    stale = "slides.faiss was written at database change 5 but the database is at change 6"
    with pytest.warns(UserWarning, match=stale):
        library = Library.open(folder)
    with library:
        assert len(library) == 6 and "rebuilt" in library.repaired
    _assert_consistent(folder, []).close()


def test_importing_the_package_is_light():
    """The search dock imports index/ when napari starts: no faiss yet, and never torch or napari."""
    code = "import sys, napari_pathalign.index; print(sorted({'faiss', 'torch', 'napari', 'qtpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_kill_9_between_an_update_and_its_index_write_is_repaired(folder):
    """An update keeps its id, so the id check alone would miss it: the generation catches it."""
    with Library.create(folder, **MODEL) as library:
        (first, *_) = library.add(make_records(5))
    assert _run_child(folder, start=77, mode="between-update", kill_after=None) == []
    new_vector = make_records(1, seed=77)[0].vector
    stale = "slides.faiss was written at database change 5 but the database is at change 6"
    with pytest.warns(UserWarning, match=stale):
        library = Library.open(folder)
    with library:
        assert len(library) == 5 and "reports.faiss" in library.repaired
        hit = library.search(new_vector, k=1)[0]
        assert hit.id == first and hit.score == pytest.approx(1.0, abs=1e-5)


def test_another_process_changing_the_library_is_picked_up(folder):
    """Two writers: the one whose index is stale rebuilds it before writing, so the file stays true."""
    Library.create(folder, **MODEL).close()
    with Library.open(folder) as a, Library.open(folder) as b:
        (first,) = a.add(make_records(1))
        b.add(make_records(3, seed=9, start=100))  # b never saw a's slide
        moved = make_records(1, seed=42)[0]  # case 0 again: an update with a new vector
        assert b.add([moved]) == [first]
        a.add(make_records(1, seed=10, start=200))
        assert index_ids(a, "slides") == set(a.vectors()[0].tolist()) and len(a) == 5
        assert a.search(moved.vector, k=1)[0].id == first
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Library.open(folder) as library:
            assert library.repaired is None
            assert library.search(moved.vector, k=1)[0].score == pytest.approx(1.0, abs=1e-5)
