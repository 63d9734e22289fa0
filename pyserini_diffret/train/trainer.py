"""The paper's supervised fine-tuning (DESIGN 1.5), for any backbone adapter.

One step: a batch of queries, each with one positive (drawn from its positives) and ``hard_negatives``
negatives (drawn from its list); every passage of the batch is a candidate for every query. The queries and
passages go through the same prompt builder, backbone adapter and content filter as at search time, and
the loss is ``dense InfoNCE (MaxSim / K_q / temperature) + sparse_weight * sparse InfoNCE``.

Optional warm start (not in the paper): for the first ``distill_steps`` steps the loss is only the
distillation of the slots toward frozen teachers (``teachers``), afterwards ``distill_weight`` keeps it as a
regulariser.

Reproducibility: the epoch order, each step's choice of positive and negatives and each step's dropout
come from ``(seed, epoch)`` / ``(seed, step)`` alone, so a run resumed from a checkpoint ends with the same
weights as one that was never interrupted.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pyserini_diffret.core.config import CONFIG_NAME, RetrieverConfig, prompt_set
from pyserini_diffret.train.data import Example, TrainingDataError, load_examples, mine_bm25_negatives
from pyserini_diffret.train import losses

STATE_NAME = "trainer_state.pt"
LORA_AUTO_THRESHOLD = 300_000_000  # parameters; larger backbones get LoRA with lora="auto"


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in the output folder and in every checkpoint)."""

    model: str
    output: str
    data: str
    backbone: str | None = None  # default: detected from the model folder
    qrels: str | None = None  # BEIR folder: the judgements to train on (default qrels/train.tsv)
    corpus: str | None = None  # JSONL input: a BEIR corpus.jsonl to mine negatives from
    k_query: int = 4
    k_doc: int = 16
    max_query_length: int = 32
    max_document_length: int = 156
    terms_per_slot: int = 256
    prompts: str = "paper"  # "paper", "compact", or a JSON file of prompts
    batch_size: int = 16  # queries per step
    hard_negatives: int = 15  # per query per step
    mine_negatives: int = 30  # BM25 negatives kept per query when mining
    mine_depth: int = 100
    epochs: float = 1.0
    max_steps: int | None = None
    learning_rate: float | None = None  # default 1e-4 with LoRA, 5e-5 otherwise
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    temperature: float = 0.01
    sparse_weight: float = 1.0
    lora: str = "auto"  # "auto" | "on" | "off"
    lora_r: int = 16
    lora_alpha: int = 64
    lora_dropout: float = 0.0
    precision: str = "fp32"  # "fp32" | "bf16"
    gradient_checkpointing: bool = False
    seed: int = 42
    save_steps: int = 0  # 0: checkpoints at epoch ends only
    keep_checkpoints: int = 2
    resume: bool = False
    device: str = "cpu"
    threads: int | None = None
    dense_teacher: str | None = None
    sparse_teacher: str | None = None  # a SPLADE-style MLM folder, or "bm25" (statistics of the training corpus)
    distill_steps: int = 0
    distill_weight: float = 0.0
    trust_remote_code: bool = False
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in the model's config

    # Settings that must match for a checkpoint to be resumed.
    _RESUME_KEYS = ("model", "data", "qrels", "corpus", "backbone", "k_query", "k_doc", "max_query_length",
                    "max_document_length", "prompts", "batch_size", "hard_negatives", "mine_negatives",
                    "mine_depth", "epochs", "max_steps", "learning_rate", "warmup_ratio", "weight_decay",
                    "temperature", "sparse_weight", "lora", "lora_r", "lora_alpha", "lora_dropout", "precision",
                    "seed", "dense_teacher", "sparse_teacher", "distill_steps", "distill_weight")

    def validate(self) -> None:
        for name in ("k_query", "k_doc", "max_query_length", "max_document_length", "terms_per_slot", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.hard_negatives < 0:
            raise ValueError(f"hard_negatives must be >= 0, got {self.hard_negatives}")
        if self.epochs <= 0 and not self.max_steps:
            raise ValueError("epochs must be > 0 (or give max_steps)")
        if self.lora not in ("auto", "on", "off"):
            raise ValueError(f"lora must be auto, on or off, got {self.lora!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.distill_steps and not (self.dense_teacher or self.sparse_teacher):
            raise ValueError("distill_steps needs a dense_teacher and/or a sparse_teacher")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- the run ----------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    output: Path
    steps: int
    seconds: float
    losses: list[dict[str, float]]


class _Batcher:
    """Deterministic batches: epoch order from (seed, epoch), sampling from (seed, step)."""

    def __init__(self, examples: list[Example], batch_size: int, hard_negatives: int, seed: int) -> None:
        self.examples = examples
        self.batch_size = min(batch_size, len(examples))
        self.hard_negatives = hard_negatives
        self.seed = seed
        self.steps_per_epoch = math.ceil(len(examples) / self.batch_size)

    def batch(self, step: int) -> tuple[list[str], list[str], list[int], list[set[str]]]:
        epoch, index = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
        chosen = [self.examples[i] for i in order[index * self.batch_size:(index + 1) * self.batch_size]]
        rng = np.random.default_rng([self.seed, 1_000_003, step])
        queries = [e.query for e in chosen]
        passages = [e.positives[rng.integers(len(e.positives))] for e in chosen]
        targets = list(range(len(chosen)))
        for e in chosen:
            if self.hard_negatives and e.negatives:
                picks = rng.choice(len(e.negatives), size=min(self.hard_negatives, len(e.negatives)), replace=False)
                passages.extend(e.negatives[i] for i in sorted(picks))
        return queries, passages, targets, [set(e.positives) for e in chosen]


def _set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def _load_backbone(config: TrainConfig, device: torch.device):
    """The base model's settings (its ``diffret_config.json`` or zero-shot defaults) and its backbone adapter,
    through the engine's loader."""
    from pyserini_diffret.backbones import backbone_class  # noqa: PLC0415
    from pyserini_diffret.model import load_backbone, read_settings  # noqa: PLC0415

    path = Path(config.model)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: model folder not found")
    settings = read_settings(path, config.backbone)
    base_config = settings if (path / CONFIG_NAME).is_file() else None
    name = settings.backbone
    if not backbone_class(name).one_pass:
        raise ValueError(f"backbone {name!r} decodes its slots one by one; the recipe trains mask-slot backbones "
                         "(mlm, dream, llada)")
    use_lora = config.lora == "on"
    dtype = torch.float32
    if config.lora == "auto" or config.precision == "bf16":
        estimate = _parameter_estimate(_library_config(path, config.trust_remote_code))
        if config.lora == "auto":
            use_lora = estimate > LORA_AUTO_THRESHOLD
    if use_lora and config.precision == "bf16":
        dtype = torch.bfloat16  # frozen base weights in bf16; LoRA weights stay fp32
    adapter = load_backbone(path, settings, dtype=dtype, trust_remote_code=config.trust_remote_code)
    return name, adapter, use_lora, base_config


def _library_config(path: Path, trust_remote_code: bool):
    """The model's transformers config: Dream and LLaDA folders as the native loader maps them (their own
    config classes are remote code), others through ``AutoConfig``."""
    from pyserini_diffret.backbones.base import read_hf_config  # noqa: PLC0415
    from pyserini_diffret.backbones.native import native_architecture, native_model_type  # noqa: PLC0415

    hf_config = read_hf_config(path)
    if not trust_remote_code and native_model_type(hf_config):
        return native_architecture(path, hf_config).config
    from transformers import AutoConfig  # noqa: PLC0415

    return AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def _parameter_estimate(hf_config) -> int:
    hidden = int(getattr(hf_config, "hidden_size", 0) or 0)
    layers = int(getattr(hf_config, "num_hidden_layers", 0) or 0)
    vocab = int(getattr(hf_config, "vocab_size", 0) or 0)
    inter = int(getattr(hf_config, "intermediate_size", 4 * hidden) or 4 * hidden)
    return layers * (4 * hidden * hidden + 3 * hidden * inter) + vocab * hidden


def _apply_lora(adapter, config: TrainConfig):
    try:
        from peft import LoraConfig, get_peft_model  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        raise ImportError("LoRA training needs peft: pip install 'pyserini-diffret[train]'") from None
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules="all-linear", bias="none")
    # peft injects the LoRA layers into the model's own modules, so the adapter keeps working on it.
    return get_peft_model(adapter.model, lora)


def _checkpoints(output: Path) -> list[Path]:
    root = output / "checkpoints"
    return sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if root.is_dir() else []


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def train(config: TrainConfig, callback: Callable[[int, dict[str, float]], None] | None = None,
          examples: list[Example] | None = None, bm25_corpus: list[str] | None = None) -> TrainResult:
    """Fine-tune ``config.model`` and save an encoder folder (HF weights + ``diffret_config.json``).

    ``callback(step, losses)`` runs after every optimiser step (tests use it to interrupt a run).
    ``examples`` replaces reading ``config.data`` (already loaded examples); ``bm25_corpus``: the texts whose
    statistics the ``"bm25"`` sparse teacher uses (default: the corpus read with the data, else the passages).
    """
    from pyserini_diffret.core.content import ContentFilter  # noqa: PLC0415
    from pyserini_diffret.core.prompts import PromptBuilder  # noqa: PLC0415
    from pyserini_diffret.train.teachers import (  # noqa: PLC0415
        SELF, Bm25Teacher, DenseTeacher, SelfTeacher, SparseTeacher, check_vocabularies)

    config.validate()
    _set_threads(config.threads)
    started = time.time()
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)

    # Data (and mined negatives) first: bad data fails before any model is loaded.
    corpus = None
    if examples is None:
        examples, corpus = load_examples(config.data, config.qrels, config.corpus)
    if config.hard_negatives and any(not e.negatives for e in examples):
        if corpus is None:
            if not any(e.negatives for e in examples):
                raise TrainingDataError(
                    f"{config.data}: no example has negatives; give them in the file, pass a corpus to mine them "
                    "from (--corpus), or train with in-batch negatives only (--hard-negatives 0)")
        else:
            from pyserini_diffret.train.data import corpus_fingerprint  # noqa: PLC0415

            cache = output / "bm25-index" / corpus_fingerprint(corpus)
            mine_bm25_negatives(examples, corpus, cache, depth=config.mine_depth, count=config.mine_negatives)

    backbone_name, adapter, use_lora, base_config = _load_backbone(config, device)
    tokenizer = adapter.tokenizer
    model = adapter.model
    peft_model = _apply_lora(adapter, config) if use_lora else None
    adapter.to(device)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False

    prompts = prompt_set(config.prompts) if config.prompts != "paper" or base_config is None \
        else base_config.prompts
    retriever_config = RetrieverConfig(
        backbone=backbone_name, k_query=config.k_query, k_doc=config.k_doc,
        max_query_length=config.max_query_length, max_document_length=config.max_document_length,
        terms_per_slot=config.terms_per_slot, stop_truncation=False, fine_tuned=True, prompts=prompts,
        mask_token=base_config.mask_token if base_config else None,
        logit_shift=base_config.logit_shift if base_config else 0, source=str(config.model),
    )
    retriever_config.validate()
    builder = PromptBuilder(tokenizer, retriever_config, adapter.layout)
    adapter.spec(retriever_config, str(config.model)).check(builder)
    excluded = [adapter.layout.mask_id] if adapter.layout.mask_id is not None else []
    content = ContentFilter(tokenizer, adapter.vocab_size, excluded_ids=excluded)
    tail = len(adapter.layout.tail_ids)

    if config.dense_teacher == SELF:
        dense_teacher = SelfTeacher(adapter, builder, retriever_config, tail, device)
    else:
        dense_teacher = DenseTeacher(config.dense_teacher, device) if config.dense_teacher else None
    if dense_teacher and dense_teacher.hidden_size != adapter.hidden_size:
        raise ValueError(f"{config.dense_teacher}: hidden size {dense_teacher.hidden_size} differs from the "
                         f"student's {adapter.hidden_size}")
    sparse_teacher = None
    if config.sparse_teacher == "bm25":
        texts = bm25_corpus or (list(corpus.values()) if corpus
                                else sorted({p for e in examples for p in e.positives + e.negatives}))
        sparse_teacher = Bm25Teacher(texts, tokenizer, content, adapter.vocab_size, config.max_document_length)
    elif config.sparse_teacher:
        sparse_teacher = SparseTeacher(config.sparse_teacher, device)
        check_vocabularies(tokenizer, sparse_teacher)

    batcher = _Batcher(examples, config.batch_size, config.hard_negatives, config.seed)
    total = config.max_steps or max(1, math.ceil(config.epochs * batcher.steps_per_epoch))
    parameters = [p for p in model.parameters() if p.requires_grad]
    lr = config.learning_rate or (1e-4 if use_lora else 5e-5)
    decay = [p for p in parameters if p.ndim >= 2]
    no_decay = [p for p in parameters if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    warmup = int(round(config.warmup_ratio * total))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    start_step, history = 0, []
    if config.resume:
        saved = _checkpoints(output)
        if saved:
            start_step, history = _restore(saved[-1], config, model, optimizer, scheduler)

    log_path = output / "train_log.jsonl"
    log_path.write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    progress = _progress(range(start_step, total), total, start_step, config.progress)
    step = start_step
    try:
        for step in progress:
            torch.manual_seed(config.seed * 1_000_003 + step)
            queries, passages, targets, positive_sets = batcher.batch(step)
            record = _train_step(
                adapter, builder, content, tail, retriever_config, config, queries, passages, targets, positive_sets,
                dense_teacher, sparse_teacher, distill_only=step < config.distill_steps, autocast=autocast,
                device=device,
            )
            torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            record["step"] = step + 1
            record["lr"] = scheduler.get_last_lr()[0]
            record["elapsed"] = round(time.time() - started, 1)
            history.append(record)
            with log_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            if hasattr(progress, "set_postfix"):
                progress.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k in ("loss", "dense", "sparse")})
            done = step + 1
            if done < total and ((config.save_steps and done % config.save_steps == 0)
                                 or done % batcher.steps_per_epoch == 0):
                _save_checkpoint(output, done, config, model, optimizer, scheduler, history)
            if callback is not None:
                callback(done, record)
    except KeyboardInterrupt:
        done = len(history)
        if done > start_step:
            _save_checkpoint(output, done, config, model, optimizer, scheduler, history)
        raise

    # Save the encoder folder.
    if peft_model is not None:
        merged = peft_model.merge_and_unload()
        model = merged
    if config.gradient_checkpointing and hasattr(model, "gradient_checkpointing_disable"):
        model.gradient_checkpointing_disable()
    model.eval()
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    seconds = time.time() - started
    retriever_config.extra = dict(config.extra, training={
        "recipe": "diffret-sft", "steps": total, "seed": config.seed, "batch_size": batcher.batch_size,
        "hard_negatives": config.hard_negatives, "temperature": config.temperature,
        "sparse_weight": config.sparse_weight, "learning_rate": lr, "lora": use_lora,
        "precision": config.precision, "epochs": config.epochs, "distill_steps": config.distill_steps,
        "distill_weight": config.distill_weight, "examples": len(examples),
    })
    retriever_config.save(output)
    (output / "training_args.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
    return TrainResult(output, total, seconds, history)


def _progress(iterable, total: int, initial: int, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(iterable, total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


def _to(batch, device):
    return torch.from_numpy(batch.input_ids).to(device), torch.from_numpy(batch.attention_mask).to(device)


def _train_step(adapter, builder, content, tail, retriever_config: RetrieverConfig, config: TrainConfig,
                queries, passages, targets, positive_sets, dense_teacher, sparse_teacher, *, distill_only: bool,
                autocast, device) -> dict[str, float]:
    kq, kp = retriever_config.k_query, retriever_config.k_doc
    q_batch = builder.build(queries, "query", kq)
    p_batch = builder.build(passages, "document", kp)
    with autocast:
        q_hidden, q_logits = adapter.slot_states(*_to(q_batch, device), torch.arange(kq, device=device), tail)
        p_hidden, p_logits = adapter.slot_states(*_to(p_batch, device), torch.arange(kp, device=device), tail)
    q_mask = torch.from_numpy(content.mask(queries)).to(device)
    p_mask = torch.from_numpy(content.mask(passages)).to(device)
    q_weights = losses.term_weights(q_logits, q_mask)
    p_weights = losses.term_weights(p_logits, p_mask)

    record: dict[str, float] = {}
    total = torch.zeros((), device=device)
    if not distill_only:
        target = torch.tensor(targets, device=device)
        blocked = torch.tensor([[j != i and passage in positive_sets[i] for j, passage in enumerate(passages)]
                                for i in range(len(queries))], device=device)
        dense = losses.dense_loss(q_hidden, p_hidden, target, blocked, config.temperature)
        sparse = losses.sparse_loss(q_weights, p_weights, target, blocked)
        total = total + dense + config.sparse_weight * sparse
        record.update(dense=dense.item(), sparse=sparse.item())
    distill_scale = 1.0 if distill_only else config.distill_weight
    if distill_scale > 0:
        if dense_teacher is not None:
            term = (losses.slot_distillation(q_hidden, dense_teacher.batch(queries, config.max_query_length, device,
                                                                           side="query"))
                    + losses.slot_distillation(p_hidden, dense_teacher.batch(passages, config.max_document_length, device,
                                                                             side="document")))
            total = total + distill_scale * term
            record["distill_dense"] = term.item()
        if sparse_teacher is not None:
            q_target = sparse_teacher.batch(queries, config.max_query_length, device, side="query")
            p_target = sparse_teacher.batch(passages, config.max_document_length, device, side="document")
            term = (losses.weight_distillation(q_weights, q_target, q_mask)
                    + losses.weight_distillation(p_weights, p_target, p_mask))
            total = total + distill_scale * term
            record["distill_sparse"] = term.item()
    total.backward()
    record["loss"] = total.item()
    return record


def _save_checkpoint(output: Path, step: int, config: TrainConfig, model, optimizer, scheduler,
                     history: list[dict[str, float]]) -> Path:
    folder = output / "checkpoints" / f"step-{step:06d}"
    staging = folder.with_name(folder.name + ".tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    torch.save({
        "step": step,
        "config": config.to_dict(),
        "parameters": _trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": history,
    }, staging / STATE_NAME)
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)  # a checkpoint is complete or absent
    for old in _checkpoints(output)[:-max(1, config.keep_checkpoints)]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def _restore(folder: Path, config: TrainConfig, model, optimizer, scheduler) -> tuple[int, list[dict[str, float]]]:
    state = torch.load(folder / STATE_NAME, map_location="cpu", weights_only=False)
    saved = state["config"]
    changed = [k for k in TrainConfig._RESUME_KEYS if saved.get(k) != getattr(config, k)]
    if changed:
        raise ValueError(f"{folder}: cannot resume, these settings differ from the checkpoint's: {changed}")
    names = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["parameters"].items():
            if name not in names:
                raise ValueError(f"{folder}: checkpoint parameter {name} is not in the model")
            names[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"]), list(state["history"])
