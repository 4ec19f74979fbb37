"""Benchmark (encoder + index stages on a GPU): fine-tuning, catalog embedding, FAISS, one command.

Reads nothing (generates its data in a temp dir, removed at the end); prints each figure beside
its peer measured in the same run: bf16 vs fp32 fine-tuning steps/s of the full path, our bf16
embedding vs sentence-transformers fp32 items/s and a warm-cache re-run with 1% of the catalog
changed, FAISS GPU vs CPU build and search; and issue 20's scale-out figures (gpu_scaleout.py):
one Ray Data actor's bf16 embedding items/s at 1M texts vs in-process, 1-rank DDP steps/s vs the
bare module, the IVF-PQ tier's build on faiss-gpu vs CPU. Without a CUDA GPU it says so and exits
0. `--cpu-smoke` runs every section on the CPU at toy sizes (a check of the script).

A section whose package is not installed (ray; faiss) prints "did not run: ..." and the script goes
on; a section that raises prints its traceback and "FAILED", the others still run, and the exit
status is then 1. `--model DIR` takes another backbone; a DIR holding config.json and tokenizer
files but no *.safetensors (e.g. MiniLM's config without its 87 MB of weights, on a machine where
the packaged model cannot be installed) gets RANDOM weights in that architecture (seed 0), which
the script announces: speed figures hold, the cosine / max-abs-diff figures then compare two runs
of the same random model, and nothing measures quality.

    .venv/bin/python benchmarks/gpu_check.py                                   # every section
    .venv/bin/python benchmarks/gpu_check.py --sections ray-embed,ddp,ivfpq    # issue 20 only
    python3 benchmarks/gpu_check.py --model .gpumodel/all-MiniLM-L6-v2-config  # random weights
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # tokenizing 1M texts uses every core

import numpy as np  # noqa: E402
import torch  # noqa: E402

MODEL = "packaged:all-MiniLM-L6-v2"
# finetune/embed/faiss: the encoder and index stages; ray-embed/ddp/ivfpq: issue 20's scale-out
# figures (benchmarks/gpu_scaleout.py), about 4-5 minutes on their own on one H200 (estimate).
SECTIONS = ("finetune", "embed", "faiss", "ray-embed", "ddp", "ivfpq")
# Packages a section cannot run without (checked before it starts: "did not run" if missing).
NEEDS = {"faiss": ("faiss",), "ray-embed": ("ray",), "ivfpq": ("faiss",)}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="catalog size to embed")
    parser.add_argument("--st-items", type=int, default=100_000, help="subset for the peers")
    parser.add_argument("--batch-size", type=int, default=1024, help="embedding batch")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=100, help="timed steps per precision")
    parser.add_argument("--train-batch", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per fine-tune run")
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=",".join(SECTIONS))
    parser.add_argument("--ray-items", type=int, default=1_000_000, help="ray-embed: texts")
    parser.add_argument("--ddp-steps", type=int, default=50, help="ddp: timed steps per side")
    parser.add_argument("--ddp-batch", type=int, default=1024, help="ddp: global batch")
    parser.add_argument("--ivfpq-items", type=int, default=1_000_000, help="ivfpq: GPU build")
    parser.add_argument("--ivfpq-peer-items", type=int, default=200_000, help="ivfpq: GPU vs CPU")
    parser.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU")
    parser.add_argument(
        "--model",
        default=MODEL,
        help="backbone: packaged name, model dir, or a dir with config + tokenizer files and no "
        "*.safetensors (random weights in that architecture: speed figures only)",
    )
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        args.items, args.st_items, args.batch_size, args.queries = 600, 200, 64, 200
        args.train_steps, args.train_batch, args.warmup = 3, 16, 2
        args.ray_items, args.ddp_steps, args.ddp_batch = 600, 3, 16
        args.ivfpq_items = args.ivfpq_peer_items = 20_000
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"--sections: unknown {sorted(unknown)}; expected some of {SECTIONS}")
    return args


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def header(device: str) -> None:
    print("command:", shlex.join([sys.executable, *sys.argv]))
    cpu = (
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        print(
            f"machine: {props.name}, {props.total_memory / 2**30:.0f} GiB, capability "
            f"{props.major}.{props.minor}, CUDA {torch.version.cuda}, bf16 "
            f"{torch.cuda.is_bf16_supported()}; {cpu}"
        )
    else:
        print(f"machine: CPU smoke run (no GPU figures); {cpu}")


def prepare_model(name: str, tmp: Path) -> str:
    """The backbone every section uses (set as MODEL here and in gpu_scaleout). A directory with
    config.json but no *.safetensors -> BERT with random weights (seed 0) saved under `tmp`, its
    tokenizer and sentence-transformers files copied beside it."""
    import gpu_scaleout

    global MODEL
    source = Path(name).expanduser()
    if (
        source.is_dir()
        and (source / "config.json").is_file()
        and not any(source.glob("*.safetensors"))
    ):
        from transformers import AutoConfig, AutoModel

        target = tmp / "random-backbone"
        shutil.copytree(source, target)
        torch.manual_seed(0)
        model = AutoModel.from_config(AutoConfig.from_pretrained(source))
        model.save_pretrained(target)  # safetensors (the default)
        params = sum(p.numel() for p in model.parameters())
        print(
            f"model: RANDOM weights (seed 0, {params / 1e6:.1f}M parameters) in the architecture "
            f"of {source} ({model.config.model_type}, {model.config.num_hidden_layers} layers, "
            f"hidden {model.config.hidden_size}) with its tokenizer files; the trained weights "
            "did not travel, so the figures below are throughput only: cosine / max-abs-diff "
            "figures compare runs of this same random model (like with like), not quality"
        )
        del model
        name = str(target)
    else:
        print(f"model: {name}")
    MODEL = gpu_scaleout.MODEL = name
    return name


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """n item documents shaped like ours (title, genres, description) from the model's words."""
    from recsys.encoder.backbone import resolve_model_path

    vocab = Path(resolve_model_path(MODEL), "vocab.txt").read_text(encoding="utf-8").split()
    words = np.array([w for w in vocab if w.isalpha() and len(w) >= 3])
    genres = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "War"]
    rng = np.random.default_rng(seed)
    title_len, desc_len = rng.integers(1, 5, n), rng.integers(4, 30, n)
    picks = rng.integers(0, len(words), (n, 34))  # enough words for the longest text
    years, genre_picks = rng.integers(1920, 2025, n), rng.integers(0, len(genres), (n, 3))
    return [
        f"{' '.join(words[picks[i, : title_len[i]]]).title()} ({years[i]}). Genres: "
        f"{', '.join(dict.fromkeys(genres[g] for g in genre_picks[i]))}. "
        f"{' '.join(words[picks[i, 4 : 4 + desc_len[i]]]).capitalize()}."
        for i in range(n)
    ]


def finetune(device: str, args: argparse.Namespace, workdir: Path) -> None:
    """Steps/s of the full path (BERT + towers, in-batch softmax) in bf16 and in fp32."""
    from recsys.config import EncoderConfig, SplitConfig, TextConfig
    from recsys.data.loaders import load_dataset
    from recsys.data.sample import generate_sample
    from recsys.data.split import split_interactions

    small = args.cpu_smoke
    n_users, n_items = (300, 500) if small else (2000, 5000)
    generate_sample(workdir / "sample", n_users=n_users, n_items=n_items)
    dataset = load_dataset(workdir / "sample")
    split = split_interactions(dataset.interactions, SplitConfig())
    rates: dict[bool, list[float]] = {True: [], False: []}
    for bf16 in (False, True, True, False):  # ABBA: neither precision always goes first
        config = EncoderConfig(
            model_name_or_path=MODEL,
            path="full",
            device=device,
            bf16=bf16,
            batch_size=args.train_batch,
            max_length=64,
        )
        rates[bf16].append(_steps_per_second(dataset, split, config, TextConfig(), device, args))
    runs = {k: ", ".join(f"{r:.2f}" for r in v) for k, v in rates.items()}
    print(f"fine-tune runs in ABBA order (steps/s): fp32 {runs[False]}; bf16 {runs[True]}")
    rates = {k: float(np.mean(v)) for k, v in rates.items()}
    print(
        f"fine-tune (full path, MiniLM + towers, batch {args.train_batch}, {dataset.n_items} "
        f"items): bf16 {rates[True]:.2f} steps/s, fp32 {rates[False]:.2f} steps/s, "
        f"bf16/fp32 {rates[True] / rates[False]:.2f}x"
    )


def _steps_per_second(dataset, split, config, text_config, device, args) -> float:
    from recsys.training.setup import build_trainer, prepare_data, resolve_plan

    plan = resolve_plan(config, device)
    data = prepare_data(dataset, split, config, text_config, plan, None, device, False)
    trainer = build_trainer(data, config, plan, device, None)
    trainer.refresh()  # the per-epoch snapshot of item features, as run_epoch does first
    trainer.modules.train()
    rng = np.random.default_rng(0)

    def batch() -> tuple[np.ndarray, np.ndarray]:
        rows = rng.integers(0, len(trainer.users), args.train_batch)
        return trainer.users[rows], trainer.positions[rows]

    for _ in range(args.warmup):  # warm-up: cuBLAS handles, autotuning, allocator
        trainer.step(*batch())
    sync(device)
    start = time.perf_counter()
    for _ in range(args.train_steps):
        trainer.step(*batch())
    sync(device)
    return args.train_steps / (time.perf_counter() - start)


def embedding(device: str, args: argparse.Namespace, workdir: Path) -> np.ndarray:
    """Catalog-scale items/s: cold cache, then 1% changed; peers on a subset. Returns vectors."""
    from recsys.encoder.backbone import load_backbone, model_hash, pooled_embeddings
    from recsys.encoder.embed import EmbeddingCache, embed_texts

    texts = synthetic_texts(args.items)
    tokenizer, model = load_backbone(MODEL, device)
    length, batch = args.max_length, args.batch_size

    def encode(chunk: list[str]) -> np.ndarray:
        vectors = pooled_embeddings(tokenizer, model, chunk, length, batch, device)
        sync(device)
        return vectors

    encode(texts[:batch])  # warm-up
    cache = EmbeddingCache(workdir / "embeddings")
    key = f"{model_hash(MODEL)}-len{length}"
    vectors, cold = embed_texts(texts, encode, key, cache)
    changed = list(texts)
    for i in range(0, len(texts), 100):  # 1% of the catalog edited
        changed[i] += " Updated."
    _, warm = embed_texts(changed, encode, key, cache)
    print(
        f"embed {len(texts)} items (bf16, batch {batch}, max_length {length}, cold cache): "
        f"{cold.total / cold.seconds:,.0f} items/s ({cold.seconds:.1f} s, cache writes included); "
        f"1% changed: {warm.computed} computed, {warm.reused} reused in {warm.seconds:.1f} s = "
        f"{warm.seconds / cold.seconds:.1%} of the cold run"
    )
    _embedding_peers(texts[: args.st_items], tokenizer, model, device, args)
    return vectors


def _embedding_peers(texts, tokenizer, model, device, args) -> None:
    """Ours bf16 vs ours fp32 vs sentence-transformers fp32 on the same texts and batch."""
    from sentence_transformers import SentenceTransformer

    from recsys.encoder.backbone import pooled_embeddings, resolve_model_path

    st = SentenceTransformer(resolve_model_path(MODEL), device=device)
    st.max_seq_length = args.max_length
    runs = {
        "ours bf16": lambda: pooled_embeddings(
            tokenizer, model, texts, args.max_length, args.batch_size, device
        ),
        "ours fp32": lambda: pooled_embeddings(
            tokenizer, model, texts, args.max_length, args.batch_size, device, bf16=False
        ),
        "sentence-transformers fp32": lambda: st.encode(
            texts, batch_size=args.batch_size, convert_to_numpy=True
        ),
    }
    rate, vectors = {}, {}
    for name, call in runs.items():
        call()  # warm-up
        sync(device)
        start = time.perf_counter()
        out = call()
        sync(device)
        rate[name] = len(texts) / (time.perf_counter() - start)
        vectors[name] = out / np.linalg.norm(out, axis=1, keepdims=True)
    ref, st_rate = vectors["sentence-transformers fp32"], rate["sentence-transformers fp32"]
    for name in runs:
        cosine = np.sum(vectors[name] * ref, axis=1)  # (n,)
        print(
            f"  {name:27s} {rate[name]:10,.0f} items/s  {rate[name] / st_rate:5.2f}x ST  "
            f"cosine to ST min {cosine.min():.5f} mean {cosine.mean():.5f}  ({len(texts)} items)"
        )


def faiss_check(vectors: np.ndarray, args: argparse.Namespace) -> None:
    """Flat index build + search through our VectorIndex, GPU beside CPU (same vectors)."""
    import faiss

    from recsys.config import IndexConfig
    from recsys.index.faiss_index import VectorIndex

    gpus = faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0
    if gpus == 0:
        print(f"faiss {faiss.__version__}: no GPU support in this build (faiss-cpu); CPU only")
    queries = vectors[np.random.default_rng(1).integers(0, len(vectors), args.queries)]
    cpu_queries = queries[: max(1, args.queries // 10)]  # exact CPU search is ~10x slower
    k = 100
    for name, use_gpu, q in (("GPU", "auto", queries), ("CPU", "never", cpu_queries)):
        if name == "GPU" and gpus == 0:
            continue
        config = IndexConfig(factory="Flat", use_gpu=use_gpu, recall_sample=1000)
        start = time.perf_counter()
        index = VectorIndex.build(vectors, config)
        built = time.perf_counter() - start
        index.search(q[:10], k)  # warm-up
        start = time.perf_counter()
        index.search(q, k)
        qps = len(q) / (time.perf_counter() - start)
        print(
            f"faiss Flat {name} (on_gpu={index.on_gpu}) over {index.ntotal:,} x {index.dim}: "
            f"build {built:.2f} s (incl. recall check), search top-{k}: {qps:,.0f} queries/s"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sys.stdout.reconfigure(line_buffering=True)  # figures survive a timeout
    if not args.cpu_smoke and not torch.cuda.is_available():
        print(
            f"gpu_check: no CUDA GPU visible (torch {torch.__version__}, built with CUDA "
            f"{torch.version.cuda}); nothing measured. Run it on a GPU machine, or --cpu-smoke."
        )
        return 0
    device = "cpu" if args.cpu_smoke else "cuda"
    if args.cpu_smoke:
        torch.set_num_threads(1)  # a shared CPU: one thread wastes least
    header(device)
    print(
        f"sizes: items {args.items:,}, st-items {args.st_items:,}, batch {args.batch_size}, "
        f"max_length {args.max_length}, train-steps {args.train_steps}, train-batch "
        f"{args.train_batch}, queries {args.queries:,}, ray-items {args.ray_items:,}, ddp-steps "
        f"{args.ddp_steps}, ddp-batch {args.ddp_batch}, ivfpq-items {args.ivfpq_items:,}, "
        f"ivfpq-peer-items {args.ivfpq_peer_items:,}"
    )
    start = time.perf_counter()
    sections = args.sections.split(",")
    failed = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        prepare_model(args.model, Path(tmp))
        for section in [s for s in SECTIONS if s in sections]:
            missing = [m for m in NEEDS.get(section, ()) if importlib.util.find_spec(m) is None]
            if missing:
                print(
                    f"{section}: did not run: needs the package(s) {', '.join(missing)}, not "
                    f"installed for {sys.executable}"
                )
                continue
            try:
                run_section(section, device, args, Path(tmp) / section)
            except ModuleNotFoundError as exc:
                print(f"{section}: did not run: module {exc.name!r} is not installed ({exc})")
            except Exception:  # one broken section must not cost the figures of the others
                traceback.print_exc(file=sys.stdout)
                print(f"{section}: FAILED (traceback above); going on to the next section")
                failed.append(section)
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            print(f"  [{section}: {time.perf_counter() - start:.0f} s elapsed]", flush=True)
    print(
        f"gpu_check done in {time.perf_counter() - start:.0f} s"
        + (f"; FAILED sections: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def run_section(section: str, device: str, args: argparse.Namespace, workdir: Path) -> None:
    import gpu_scaleout

    workdir.mkdir(parents=True)
    if section == "finetune":
        finetune(device, args, workdir)
    elif section == "embed":
        args.vectors = embedding(device, args, workdir)
    elif section == "faiss":
        vectors = getattr(args, "vectors", None)
        if vectors is None:  # without the embed section: unit vectors of the same shape
            vectors = np.random.default_rng(0).standard_normal((args.items, 384), np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        faiss_check(vectors, args)
    elif section == "ray-embed":
        gpu_scaleout.ray_embedding(device, synthetic_texts(args.ray_items), workdir)
    elif section == "ddp":
        gpu_scaleout.ddp_steps(
            device, args.ddp_steps, args.ddp_batch, 5000 if args.cpu_smoke else 100_000
        )
    elif section == "ivfpq":
        gpu_scaleout.ivfpq_build(args.ivfpq_items, args.ivfpq_peer_items, 128, args.cpu_smoke)


if __name__ == "__main__":
    sys.exit(main())
