"""Benchmark (encoder stage): our pooled_embeddings vs sentence-transformers on item documents.

Reads a MovieLens-style data directory; writes nothing. Every variant runs in this one process on
the same texts, threads and batch size, interleaved round-robin (so a noisy neighbour hits all of
them alike); figures are medians over repeats, shown as ratios to sentence-transformers, in
wall time and in this process's CPU time (steadier on a shared machine; use 1 thread for it).

    .venv/bin/python benchmarks/embed_throughput.py --data /work/shared/datasets/ml-latest-small
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import machine  # noqa: E402

from recsys.config import DataConfig, TextConfig  # noqa: E402
from recsys.data.loaders import load_dataset  # noqa: E402
from recsys.encoder.backbone import (  # noqa: E402
    length_batches,
    load_backbone,
    mean_pool,
    pooled_embeddings,
    resolve_model_path,
    tokenize_lengths,
)
from recsys.encoder.onnx import OnnxBackbone  # noqa: E402
from recsys.text.documents import item_documents  # noqa: E402

MODEL = "packaged:all-MiniLM-L6-v2"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="MovieLens-style data directory")
    parser.add_argument("--n", type=int, default=512, help="texts to embed (0: the whole catalog)")
    parser.add_argument(
        "--batch-size", type=int, default=32, help="sentence-transformers' default; ours on CPU"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads, same for all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=256, help="sentence-transformers' own")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow)")
    parser.add_argument(
        "--main-only", action="store_true", help="only sentence-transformers and ours (2 runtimes)"
    )
    return parser.parse_args(argv)


def item_texts(data: str, n: int) -> list[str]:
    """Item documents as the pipeline builds them; a seeded random subset of n when n > 0."""
    docs = item_documents(load_dataset(data, DataConfig()), TextConfig())
    if 0 < n < len(docs):
        picked = np.random.default_rng(0).choice(len(docs), size=n, replace=False)
        docs = [docs[i] for i in picked]
    return docs


def padding_report(tokenizer, texts: list[str], batch: int, max_length: int) -> str:
    """Padded tokens per real token for three batching orders (what bucketing can save)."""
    lengths = np.array([len(ids) for ids in tokenize_lengths(tokenizer, texts, max_length)])

    def waste(order: np.ndarray) -> float:
        chunks = [lengths[order[i : i + batch]] for i in range(0, len(order), batch)]
        padded = sum(len(c) * c.max() for c in chunks)
        return padded / lengths.sum() - 1.0

    by_chars = np.argsort([-len(t) for t in texts], kind="stable")  # sentence-transformers' sort
    ours = length_batches(lengths.tolist(), batch)
    ours_waste = sum(len(b) * lengths[b].max() for b in ours) / lengths.sum() - 1.0
    return (
        f"tokens per text: mean {lengths.mean():.1f}, max {lengths.max()}; padding overhead: "
        f"input order {waste(np.arange(len(texts))):.1%}, sorted by chars (sentence-transformers) "
        f"{waste(by_chars):.1%}, sorted by tokens {waste(np.argsort(-lengths)):.1%}, "
        f"length_batches (ours) {ours_waste:.1%} in {len(ours)} batches"
    )


def unbucketed(tokenizer, model, texts: list[str], max_length: int, batch: int) -> np.ndarray:
    """Reference without length bucketing: batches in input order, padded by the tokenizer."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            enc = tokenizer(
                texts[start : start + batch],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            hidden = model(**enc).last_hidden_state  # (batch, seq, hidden)
            out.append(mean_pool(hidden, enc["attention_mask"]).numpy())
    return np.concatenate(out)


def normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def int8_model(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 (per-channel weights) on every Linear: fbgemm's AVX2 kernels."""
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated for torchao
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        config = {torch.nn.Linear: per_channel_dynamic_qconfig}
        return quantize_dynamic(copy.deepcopy(model), config)


def variants(args: argparse.Namespace, texts: list[str]) -> dict[str, Callable[[], np.ndarray]]:
    """Name -> a call that embeds all texts and returns (n, dim) L2-normalised float32."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    path = resolve_model_path(MODEL)
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = args.max_length
    tokenizer, model = load_backbone(MODEL)
    eager = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    quantized = int8_model(model)
    b, length = args.batch_size, args.max_length

    def ours(m: object, batch: int = b, pad: float = 0.1) -> Callable[[], np.ndarray]:
        return lambda: normalised(
            pooled_embeddings(tokenizer, m, texts, length, batch, "cpu", max_padding=pad)
        )

    onnx = OnnxBackbone(model, None)  # the product's default CPU runtime; exported, untimed
    calls = {
        "sentence-transformers": lambda: st.encode(
            texts, batch_size=b, normalize_embeddings=True, convert_to_numpy=True
        ),
        "ours (fp32, onnxruntime)": ours(onnx),
        "ours (fp32, torch sdpa)": ours(model),
        "ours, plain sorted batches": ours(model, pad=float("inf")),
        "ours, eager attention": ours(eager),
        "ours, no length buckets": lambda: normalised(
            unbucketed(tokenizer, model, texts, length, b)
        ),
        f"ours, batch {4 * b}": ours(model, 4 * b),
        "ours, dynamic int8 (not fp32)": ours(quantized),
    }
    if args.main_only:
        calls = {name: calls[name] for name in list(calls)[:3]}
    if args.compile:
        compiled = copy.deepcopy(model)
        compiled.forward = torch.compile(compiled.forward, dynamic=True)
        calls["ours, torch.compile"] = ours(compiled)
    return calls


def warm_up(calls: dict[str, Callable[[], np.ndarray]]) -> dict[str, np.ndarray]:
    """One untimed call each (loads kernels, compiles); its vectors give the cosines."""
    vectors = {}
    for name, call in calls.items():
        start = time.perf_counter()
        vectors[name] = call()
        print(f"  warm-up {name}: {time.perf_counter() - start:.1f} s", flush=True)
    return vectors


def run(calls: dict[str, Callable[[], np.ndarray]], repeats: int) -> dict[str, list[tuple]]:
    """Round-robin timing, so that load from other processes hits every variant alike.

    Each sample is (wall s, CPU s of this process): on a shared machine the CPU time is the
    steadier measure of the work done (with 1 thread it does not count time spent waiting)."""
    samples: dict[str, list[tuple]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return samples


def report(samples: dict[str, list[tuple]], vectors: dict[str, np.ndarray], n: int) -> None:
    reference = vectors["sentence-transformers"]
    base = [statistics.median(t[j] for t in samples["sentence-transformers"]) for j in (0, 1)]
    print(
        f"{'variant':34s} {'wall s':>7s} {'texts/s':>8s} {'vs ST':>6s} {'CPU s':>7s} "
        f"{'vs ST':>6s} {'cos min':>8s} mean"
    )
    for name, times in samples.items():
        wall, cpu = (statistics.median(t[j] for t in times) for j in (0, 1))
        cosine = np.sum(vectors[name] * reference, axis=1)  # (n,)
        print(
            f"{name:34s} {wall:7.2f} {n / wall:8.1f} {base[0] / wall:5.2f}x {cpu:7.2f} "
            f"{base[1] / cpu:5.2f}x {cosine.min():8.5f} {cosine.mean():.5f}"
        )
    rounded = {k: [(round(w, 2), round(c, 2)) for w, c in v] for k, v in samples.items()}
    print("(wall, CPU) seconds per repeat:", rounded)


def model_flops(config, lengths: np.ndarray) -> float:
    """FLOPs one BERT forward needs for these unpadded token lengths: every layer's Q, K, V, O
    and feed-forward multiplies per real token, plus attention's QK^T and AV per text."""
    h, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = 2 * layers * (4 * h * h + 2 * h * inner)
    attention = 2 * layers * 2 * h * float(np.sum(lengths.astype(np.float64) ** 2))
    return per_token * float(lengths.sum()) + attention


def gemm_rate(config, rows: int, seconds: float = 1.0) -> dict[str, float]:
    """This core's fp32 GEMM rate (GFLOP/s) on the model's own shapes, (rows x h) @ (h x inner)
    and back, through torch (MKL) and through ONNX Runtime's MLAS: the ceiling of any fp32 path."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    h, inner = config.hidden_size, config.intermediate_size
    rng = np.random.default_rng(0)
    out = {}
    for label in ("torch", "onnxruntime"):
        flops = done = 0.0
        for k, n in ((h, inner), (inner, h), (h, h)):
            a = rng.normal(size=(rows, k)).astype(np.float32)
            b = rng.normal(size=(k, n)).astype(np.float32)
            if label == "torch":
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)

                def call(ta=ta, tb=tb):
                    return torch.mm(ta, tb)
            else:
                graph = helper.make_graph(
                    [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                    [helper.make_tensor_value_info("a", TensorProto.FLOAT, [rows, k])],
                    [helper.make_tensor_value_info("c", TensorProto.FLOAT, [rows, n])],
                    [onnx.numpy_helper.from_array(b, "b")],
                )  # fmt: skip
                model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                options = ort.SessionOptions()
                options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
                session = ort.InferenceSession(model.SerializeToString(), options)

                def call(session=session, a=a):
                    return session.run(None, {"a": a})

            call()
            start = time.perf_counter()
            calls = 0
            while time.perf_counter() - start < seconds:
                call()
                calls += 1
            done += time.perf_counter() - start
            flops += 2.0 * rows * k * n * calls
        out[label] = flops / done / 1e9
    return out


def roofline(tokenizer, config, texts, samples, batch: int, max_length: int) -> None:
    """How far any fp32 implementation could go: the model's FLOPs on these texts at the best
    GEMM rate this core reaches on the model's shapes, measured now."""
    lengths = np.array([len(ids) for ids in tokenize_lengths(tokenizer, texts, max_length)])
    flops = model_flops(config, lengths)
    rates = gemm_rate(config, rows=int(batch * lengths.mean()))
    best = max(rates.values())
    floor = flops / (best * 1e9)  # seconds
    st = statistics.median(t[0] for t in samples["sentence-transformers"])
    print(
        f"roofline: {flops / 1e12:.2f} TFLOP for these texts unpadded; fp32 GEMM on the model's "
        f"shapes ({int(batch * lengths.mean())} rows), 1 thread: "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in rates.items())
    )
    for name, times in samples.items():
        wall = statistics.median(t[0] for t in times)
        print(f"  {name:34s} {flops / wall / 1e9:6.1f} GFLOP/s of useful work ({floor / wall:.0%})")
    print(
        f"  fastest fp32 time at {best:.1f} GFLOP/s: {floor:.1f} s = at most {st / floor:.2f}x "
        f"sentence-transformers' {st:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print("machine:", machine())
    texts = item_texts(args.data, args.n)
    calls = variants(args, texts)
    tokenizer, backbone = load_backbone(MODEL)
    print(
        f"texts: {len(texts)} item documents, batch {args.batch_size}, max_length {args.max_length}"
    )
    print(padding_report(tokenizer, texts, args.batch_size, args.max_length))
    vectors = warm_up(calls)
    samples = run(calls, args.repeats)
    report(samples, vectors, len(texts))
    roofline(tokenizer, backbone.config, texts, samples, args.batch_size, args.max_length)
    print("machine at end:", machine())
    return 0


if __name__ == "__main__":
    sys.exit(main())
