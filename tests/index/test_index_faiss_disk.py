"""The faiss backend on disk: built from shards, persisted beside them, loaded (mmapped, not retrained)
by a second process; recall@10 in `index info`; the memory budget; LanceDB export with filters."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from anybind import Index
from anybind.cli import main
from anybind.errors import InputError
from anybind.index import choose_index_factory

faiss = pytest.importorskip("faiss")

DIM = 32


def make_index(tmp_path: Path, options: dict) -> tuple[Index, Path]:
    rows = F.normalize(torch.randn(3000, DIM, generator=torch.Generator().manual_seed(0)), dim=1)
    index = Index("test:anchor", DIM, backend="faiss", backend_options=options)
    index.add(rows[:2000], modality="image", metadata=[{"source": f"{i}.png", "split": i % 3} for i in range(2000)])
    index.add(rows[2000:], modality="audio")
    path = tmp_path / "f.index"
    index.save(path)
    return index, path


SECOND_PROCESS = textwrap.dedent("""
    import json, sys
    import faiss, torch
    import anybind.index.faiss_store as store
    def refuse(*args, **kwargs):
        raise AssertionError("the saved faiss index was trained or rebuilt again")
    store.train_faiss_index = refuse
    store.build_from_chunks = refuse
    faiss.index_factory = refuse
    from anybind import Index
    index = Index.load(sys.argv[1])
    queries = torch.load(sys.argv[2])
    result = index.search(queries, k=5)
    filtered = index.search(queries, k=5, modality="audio")
    print(json.dumps({"ids": result.ids, "filtered": filtered.ids, "type": type(index._faiss.index).__name__,
                      "info": index.info()["faiss"]}))
""")


def test_saved_faiss_index_is_loaded_not_retrained_by_a_second_process(tmp_path: Path) -> None:
    index, path = make_index(tmp_path, {"factory": "IVF16,Flat", "nprobe": 8})
    manifest = json.loads((path / "manifest.json").read_text())
    tag = json.loads((path / f"faiss-{manifest['generation']}.json").read_text())
    assert tag["generation"] == manifest["generation"] and tag["factory"] == "IVF16,Flat" and len(tag["sha256"]) == 64
    assert tag["options"] == {"factory": "IVF16,Flat", "nprobe": 8} and 0.5 <= tag["recall_at_10"] <= 1
    queries = index.vectors()[:6] + 0.05
    torch.save(queries, tmp_path / "q.pt")
    here = Index.load(path).search(queries, k=5)
    out = subprocess.run([sys.executable, "-c", SECOND_PROCESS, str(path), str(tmp_path / "q.pt")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["ids"] == here.ids and got["type"] == "IndexIVFFlat"
    assert all(i >= 2000 for row in got["filtered"] for i in row)  # modality filter on the mapped index
    assert got["info"]["recall_at_10"] == tag["recall_at_10"]

    changed = Index.load(path)  # a change invalidates the saved faiss index; a re-save replaces it
    changed.remove([0])
    changed.save(path)
    assert len(list(path.glob("faiss-*.index"))) == 1 and not (path / tag["file"]).exists()


def test_a_damaged_faiss_file_is_named(tmp_path: Path) -> None:
    _, path = make_index(tmp_path, {"factory": "IVF16,Flat"})
    file = next(path.glob("faiss-*.index"))
    file.write_bytes(file.read_bytes()[:-10])
    with pytest.raises(InputError, match=r"faiss-[0-9a-f]+\.index' is truncated or altered"):
        Index.load(path).search(torch.ones(1, DIM), k=3)


def test_index_info_reports_recall_and_the_budget_picks_the_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, path = make_index(tmp_path, {"memory_budget": "4GB"})
    assert main(["index", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "faiss: Flat" in out and "recall@10 vs exact 1.0 on 100 sampled queries" in out
    # autofaiss-like choice: more vectors than the budget holds -> IVF-PQ, with the smallest type named when none fits
    assert choose_index_factory(5_000_000, 512, "2GB") == "IVF8192,PQ64"
    with pytest.raises(InputError, match=r"cannot hold 5000000 vectors; the smallest index type, IVF8192,PQ4, "
                                         r"needs about 60000000 bytes \(57 MiB\)"):
        choose_index_factory(5_000_000, 512, "20MB")


def test_lancedb_export_keeps_metadata_and_modality_filters(tmp_path: Path) -> None:
    lancedb = pytest.importorskip("lancedb")
    index, path = make_index(tmp_path, {"factory": "Flat"})
    assert main(["index", "export", str(path), "--lancedb", str(tmp_path / "db"), "--table", "t"]) == 0
    table = lancedb.connect(str(tmp_path / "db")).open_table("t")
    assert table.count_rows() == 3000
    query = index.vectors()[2500] + 0.1
    expected = index.search(query, k=5, modality="audio", backend="exact")
    found = (table.search(query.numpy()).metric("dot").where("modality = 'audio'", prefilter=True).limit(5)
             .to_arrow().to_pydict())
    assert [int(i) for i in found["id"]] == expected.ids[0]
    row = table.search().where("id = 7").to_arrow().to_pydict()
    assert row["source"] == ["7.png"] and row["split"] == [1] and row["modality"] == ["image"]


@pytest.mark.parametrize(("argv", "message"), [
    (["index", "build", "{tmp}/b.index", "-i", "text", "a", "b", "--backend", "faiss", "--memory-budget", "300MB"],
     r"`memory_budget`: 314572800 bytes leaves nothing for the index: .* the smallest index type, IVF1,PQ4, needs"),
    (["index", "build", "{tmp}/b.index", "-i", "text", "a", "--part-rows", "0"], r"`--part-rows`: expected a positive"),
    (["index", "merge", "{tmp}/nothing.parts", "{tmp}/b.index"], r"`parts`: folder .*nothing.parts' does not exist"),
    (["index", "export", "{tmp}/b.index"], r"`index export`: expected --parquet FILE and/or --lancedb DIR"),
])
def test_scale_cli_errors(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([arg.replace("{tmp}", str(tmp_path)) for arg in argv]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_pq_candidates_are_reranked_with_the_exact_rows(tmp_path: Path) -> None:
    rows = F.normalize(torch.randn(3000, DIM, generator=torch.Generator().manual_seed(3)), dim=1)
    index = Index("test:anchor", DIM, backend="faiss", backend_options={"factory": "IVF8,PQ4", "nprobe": 8})
    index.add(rows, modality="image")
    index.save(tmp_path / "pq.index")
    queries = rows[:5] + 0.01
    for searched in (index, Index.load(tmp_path / "pq.index")):
        result = searched.search(queries, k=4)
        exact = torch.stack([F.normalize(queries, dim=1)[q] @ rows[result.ids[q]].T for q in range(5)])
        torch.testing.assert_close(result.scores, exact)  # exact cosines, not PQ approximations
        assert [row[0] for row in result.ids] == [0, 1, 2, 3, 4]
