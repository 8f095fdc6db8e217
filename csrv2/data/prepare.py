"""Tasks → what runs consume: embedded evaluation splits (EmbeddedTask) and training data, through the cache.

    data = training_data(config)                       # what Trainer(config, data) trains on
    prepared = prepare_task("r8", config)              # prepared.task: EmbeddedTask, prepared.train: TrainingData
    fill(config)                                       # embed everything a run needs, ahead of time

Cache keys (csrv2.backbone.embeddings) name what is embedded: `<task>/<split>/<role>` for evaluation roles,
`<task>/train/train-{query,document}` for training texts; a seeded row cap adds `-sub<N>` (and the seed for
evaluation rows). Retrieval documents are always read from the corpus embeddings, so a corpus is embedded once.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csrv2.backbone.embeddings import embed_images, embed_texts
from csrv2.config.run_config import Config
from csrv2.config.strict import ConfigError
from csrv2.data.arrays import check_arrays, load_arrays
from csrv2.data.catalog import catalog as catalog_names
from csrv2.data.catalog import get_task
from csrv2.data.fetch import set_folder
from csrv2.data.sources import SOURCES
from csrv2.data.stacked_rows import StackedRows
from csrv2.data.tasks import ROLES, EmbeddedTask, Split, Task
from csrv2.files import atomic_write


@dataclass
class TrainingData:
    """What one run trains on. A frozen backbone needs `embeddings`; a trainable one (train.backbone=full|lora)
    reads `inputs`. Rows sharing a label are positives of each other (csrv2.data.tasks)."""

    embeddings: np.ndarray | StackedRows | None = None  # (N, d) float32 backbone embeddings (often memory maps)
    labels: np.ndarray | None = None  # (N,) int64 contrastive labels, or None (unlabelled: train.objective=csr)
    inputs: list[str] | np.ndarray | None = None  # texts (N,) or images (N, H, W[, 3]) behind the embeddings
    source: str = "training data"  # where the rows came from, named in errors
    unit_rows: bool = True  # refuse embedding rows that are not L2-normalised (False: backbone.normalize=false)
    unlabeled: np.ndarray | None = None  # (N,) bool: rows without a label of their own (data.unlabeled), or None

    def __post_init__(self):
        if self.embeddings is None and self.inputs is None:
            raise ValueError(f"{self.source}: neither embeddings nor inputs given")
        if self.embeddings is not None:
            self.embeddings, self.labels = check_arrays(self.embeddings, self.labels, self.source, self.unit_rows)
        if self.inputs is not None:
            n = len(self.inputs)
            if n == 0 or (self.labels is not None and len(self.labels) != n):
                got = None if self.labels is None else len(self.labels)
                raise ValueError(f"{self.source}: {n} inputs and {got} labels; need at least one, one label each")
            if self.embeddings is not None and len(self.embeddings) != n:
                raise ValueError(f"{self.source}: {n} inputs but {len(self.embeddings)} embedding rows")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.unlabeled is not None:
            self.unlabeled = np.asarray(self.unlabeled, dtype=bool)
            if self.unlabeled.shape != (len(self),):
                raise ValueError(f"{self.source}: unlabeled mask has shape {self.unlabeled.shape}, need ({len(self)},)")

    def __len__(self) -> int:
        return len(self.embeddings) if self.embeddings is not None else len(self.inputs)

    def fingerprint(self, sample_rows: int = 4096) -> dict:
        """What identifies these rows, cheaply: source, shape, and sha256 of the labels, the texts (or images) and
        `sample_rows` evenly spaced embedding rows (a whole 10M-row cache would take minutes to hash)."""
        record: dict = {"source": self.source, "rows": len(self)}
        if self.labels is not None:
            record["labels_sha256"] = hashlib.sha256(np.ascontiguousarray(self.labels).tobytes()).hexdigest()
        if self.embeddings is not None:
            n = self.embeddings.shape[0]
            rows = np.unique(np.linspace(0, n - 1, min(n, sample_rows)).astype(np.int64))
            sample = np.ascontiguousarray(self.embeddings[rows], dtype=np.float32)
            record["width"] = int(self.embeddings.shape[1])
            record["embeddings_sample_sha256"] = hashlib.sha256(sample.tobytes()).hexdigest()
        if self.inputs is not None:
            h = hashlib.sha256()
            if isinstance(self.inputs, np.ndarray):
                h.update(np.ascontiguousarray(self.inputs).tobytes())
            else:
                for text in self.inputs:
                    h.update(text.encode("utf-8", "surrogatepass") + b"\0")
            record["inputs_sha256"] = h.hexdigest()
        return record


@dataclass
class PreparedTask:
    task: EmbeddedTask  # the evaluation split's embeddings per role, with its gold data
    train: TrainingData | None  # the train split's training examples (None: scoring only, not needed)


def check_inputs(config: Config) -> None:
    """What a run will read, checked before any work: every task named in data.task and eval.tasks exists (in the
    catalog or data.tasks), and data.eval_embeddings exists with the width of data.embeddings. Nothing is loaded; a
    set of the shared data folder found neither converted nor in the shared folder is fetched (csrv2.data.fetch)."""
    known = set(catalog_names()) | {spec.name for spec in config.data.tasks}
    for key, names in (
        ("data.task", [config.data.task] if config.data.task else []),
        ("data.mixture", config.data.mixture),
        ("data.unlabeled", config.data.unlabeled),
        ("eval.tasks", config.eval.tasks),
    ):
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ConfigError(
                f"{key}: unknown task {unknown[0]!r}; name a catalog task (csrv2 data list) or one defined in "
                "data.tasks"
            )
        defined = {spec.name for spec in config.data.tasks}
        for name in names:  # a set of the shared data folder that is not here is fetched now, not after training
            if name in SOURCES and name not in defined:
                set_folder(name)
    if config.data.eval_embeddings:
        test_x, _ = load_arrays(config.data.eval_embeddings, "data.eval_embeddings")
        if config.data.embeddings:
            train_x, _ = load_arrays(config.data.embeddings, "data.embeddings")
            if test_x.ndim != 2 or train_x.ndim != 2 or test_x.shape[1] != train_x.shape[1]:
                raise ConfigError(
                    f"data.eval_embeddings has shape {test_x.shape} but data.embeddings {train_x.shape}: "
                    "both must be (N, d) with the same d"
                )


def training_data(config: Config) -> TrainingData:
    """The rows `config` trains on: data.embeddings (a .npy/.npz), or data.task's train split — embedded by the
    backbone when it is frozen, as texts or images when it is trained (then without embeddings)."""
    data = config.data
    if data.embeddings:
        embeddings, labels = load_arrays(data.embeddings, "data.embeddings")
        return TrainingData(embeddings, labels, source=f"data.embeddings ({data.embeddings})")
    if data.mixture or data.unlabeled:
        return mixture_training_data(config)
    if not data.task:
        raise ConfigError("no training data: set data.embeddings (a .npy/.npz), data.task or data.mixture")
    task = get_task(data.task, data.tasks)
    if config.train.backbone == "frozen":
        return task_training_data(task, config)
    ex = task.training_examples("train")
    vision = config.backbone.kind == "vision"
    if vision != (ex.images is not None):
        raise ValueError(
            f"data.task ({data.task}): backbone.kind={config.backbone.kind} needs "
            f"{'images' if vision else 'texts'}, but this task holds {'texts' if vision else 'images'}"
        )
    inputs = ex.images if vision else list(ex.texts)
    return TrainingData(labels=ex.labels, inputs=inputs, source=f"data.task ({data.task})")


def mixture_training_data(config: Config) -> TrainingData:
    """data.mixture (or data.task) plus data.unlabeled as one TrainingData, rows in that order.

    Labelled rows: each task's train-split examples, at most data.max_per_task drawn with seed 0 (the draw the grid
    and `csrv2 data` cache), labels shifted past the previous task's so every task keeps its own classes.
    Unlabelled rows: each data.unlabeled task's examples, at most data.max_unlabeled_per_task (default: as
    data.max_per_task) drawn with seed 1 (a task in both adds its other rows), minus texts already present; every one
    a class of its own, marked in `unlabeled`.
    """
    data = config.data
    if config.backbone.kind == "vision":
        raise ConfigError("data.mixture and data.unlabeled take text tasks; backbone.kind=vision embeds images")
    parts: list[TrainingData] = []
    labels: list[np.ndarray] = []
    texts: list[str] = []
    next_label = 0
    cap = data.max_per_task if data.mixture else 0  # data.task alone trains on all its rows, with or without more
    for name in data.mixture or [data.task]:
        part = task_training_data(get_task(name, data.tasks), config, cap, np.random.default_rng(0))
        parts.append(part)
        labels.append(part.labels + next_label)
        next_label = int(labels[-1].max()) + 1
        texts += part.inputs
    n_labeled, seen = len(texts), set(texts)
    unlabeled_cap = data.max_per_task if data.max_unlabeled_per_task is None else data.max_unlabeled_per_task
    for name in data.unlabeled:
        task = get_task(name, data.tasks)
        part = task_training_data(task, config, unlabeled_cap, np.random.default_rng(1), exclude=seen)
        if part is None:  # every text of the draw is trained on already
            continue
        seen.update(part.inputs)
        parts.append(TrainingData(part.embeddings, None, part.inputs, part.source))
        labels.append(next_label + np.arange(len(part)))
        next_label += len(part)
        texts += part.inputs
    names = ", ".join(data.mixture or [data.task])
    source = f"data.mixture ({names})" if data.mixture else f"data.task ({names})"
    if data.unlabeled:
        source += f" + data.unlabeled ({', '.join(data.unlabeled)})"
    return TrainingData(
        StackedRows([part.embeddings for part in parts]),  # the tasks' memory maps, not a copy of the mixture in RAM
        np.concatenate(labels),
        texts,
        source,
        unit_rows=config.backbone.normalize,
        unlabeled=np.arange(len(texts)) >= n_labeled,
    )


def task_training_data(
    task: Task, config: Config, max_train: int = 0, rng=None, exclude: set[str] | None = None
) -> TrainingData | None:
    """The train split's training examples (csrv2.data.tasks) embedded by config.backbone, with their texts or images.

    max_train: a seeded row cap (rng) applied before embedding; 0 → all rows. exclude: texts to leave out, and the
    repeats of a text within the draw after its first row, also before embedding (unlabelled rows that add only
    texts not already trained on); None is returned when that leaves no row."""
    ex = task.training_examples("train")
    n = len(ex.labels)
    capped = bool(max_train) and n > max_train
    rows = np.sort(rng.choice(n, max_train, replace=False)) if capped else np.arange(n)
    if exclude is not None:
        if ex.texts is None:
            raise ValueError(f"task {task.name}: exclude= filters texts, but this task holds images")
        rows = _first_of_new_texts(ex.texts, rows, exclude)
        if not len(rows):
            return None
    # a subset's cache key names how many rows it kept (the texts' hash tells two draws of one size apart)
    backbone, base, sub = config.backbone, f"{task.name}/train", f"-sub{len(rows)}" if len(rows) < n else ""
    source = f"task {task.name} (train split)"
    if ex.images is not None:
        images = ex.images[rows]
        x = _f32(embed_images(backbone, images, f"{base}/images{sub}"))
        return TrainingData(x, ex.labels[rows], images, source, unit_rows=backbone.normalize)
    texts = np.array(ex.texts, dtype=object)[rows]
    is_query = ex.is_query[rows]
    x = None
    for kind, part_rows in (("query", np.flatnonzero(is_query)), ("document", np.flatnonzero(~is_query))):
        if not len(part_rows):
            continue
        part_texts = texts[part_rows].tolist()
        if kind == "document" and task.type == "retrieval":
            corpus = embed_texts(backbone, task.corpus, f"{task.name}/corpus")  # (N_corpus, d), shared with scoring
            row_of = {t: i for i, t in enumerate(task.corpus)}
            part = np.asarray(corpus)[[row_of[t] for t in part_texts]]
        else:
            part = embed_texts(backbone, part_texts, f"{base}/train-{kind}{sub}", kind)
        if len(part_rows) == len(rows):  # one kind only: the cache's memory map itself, read per batch, never copied
            x = part
            break
        if x is None:
            x = np.empty((len(rows), part.shape[1]), dtype=np.float32)
        x[part_rows] = part
    return TrainingData(x, ex.labels[rows], texts.tolist(), source, unit_rows=backbone.normalize)


def _first_of_new_texts(texts, rows: np.ndarray, exclude: set[str]) -> np.ndarray:
    """rows (sorted) → those whose text is not in `exclude` and not seen at an earlier row of `rows`."""
    seen, keep = set(exclude), []
    for row in rows:
        if texts[row] not in seen:
            seen.add(texts[row])
            keep.append(row)
    return np.asarray(keep, dtype=np.int64)


def prepare_task(
    name: str, config: Config, max_train: int = 0, max_eval: int = 0, seed: int = 0, for_training: bool = True
) -> PreparedTask:
    """A catalog (or data.tasks) task → its evaluation split's embeddings per role (cached) and its training data.

    max_train / max_eval: seeded row caps applied before embedding (0 → all rows). Classification and image tasks
    fit their classifier on the same train rows the heads train on. for_training=False: only what scoring needs
    (other task types then skip their train split).
    """
    task = get_task(name, config.data.tasks)
    if task.type not in ROLES:
        raise ValueError(f"task {name!r}: type {task.type!r} cannot be scored; valid: {', '.join(ROLES)}")
    rng = np.random.default_rng(seed)  # drawn first for training rows, then for evaluation rows
    train = None
    if for_training or task.type in ("classification", "image_classification"):
        train = task_training_data(task, config, max_train, rng)
    split_name = task.test_split
    split = task.splits[split_name]
    key = f"{name}/{split_name}"
    if max_eval and len(split) > max_eval:
        rows = np.sort(rng.choice(len(split), max_eval, replace=False))
        if task.type == "retrieval":
            ids = [split.query_ids[i] for i in rows]
            split = Split(texts=[split.texts[i] for i in rows], query_ids=ids, qrels={q: split.qrels[q] for q in ids})
        else:
            split = split.subset(rows)
        key += f"-sub{max_eval}s{seed}"
    return PreparedTask(embed_evaluation_split(task, split, key, config, train), train)


def embed_evaluation_split(task: Task, split: Split, key: str, config: Config, train: TrainingData | None):
    """One split → EmbeddedTask with the roles of csrv2.data.tasks.ROLES (classifiers fit on `train`)."""
    bb, t, name = config.backbone, task.type, task.name
    if t in ("classification", "image_classification"):
        if t == "image_classification":
            test = embed_images(bb, split.images, f"{key}/images")
        else:
            test = embed_texts(bb, split.texts, f"{key}/texts")
        arrays = {"train": train.embeddings, "test": _f32(test)}
        return EmbeddedTask(name, t, arrays, {"train_labels": train.labels, "test_labels": split.labels})
    if t == "clustering":
        return EmbeddedTask(
            name, t, {"test": _f32(embed_texts(bb, split.texts, f"{key}/texts"))}, {"labels": split.labels}
        )
    if t in ("sts", "pair_classification"):
        arrays = {
            "text1": _f32(embed_texts(bb, split.texts, f"{key}/texts")),
            "text2": _f32(embed_texts(bb, split.texts2, f"{key}/texts2")),
        }
        return EmbeddedTask(name, t, arrays, {"scores": split.scores} if t == "sts" else {"labels": split.labels})
    if t == "retrieval":
        row_of = {doc_id: i for i, doc_id in enumerate(task.corpus_ids)}
        relevance = [
            {row_of[d]: float(g) for d, g in split.qrels.get(q, {}).items() if d in row_of} for q in split.query_ids
        ]
        arrays = {
            "queries": _f32(embed_texts(bb, split.texts, f"{key}/queries", "query")),
            "corpus": _f32(embed_texts(bb, task.corpus, f"{name}/corpus")),
        }
        return EmbeddedTask(name, t, arrays, {"relevance": relevance})
    # reranking: the docs role is each query's positives then negatives, concatenated in query order
    candidates, groups, start = [], [], 0
    for i, (pos, neg) in enumerate(zip(split.positives, split.negatives)):
        candidates += list(pos) + list(neg)
        is_relevant = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
        groups.append((i, np.arange(start, start + len(pos) + len(neg)), is_relevant))
        start += len(pos) + len(neg)
    arrays = {
        "queries": _f32(embed_texts(bb, split.texts, f"{key}/queries", "query")),
        "docs": _f32(embed_texts(bb, candidates, f"{key}/candidates")),
    }
    return EmbeddedTask(name, t, arrays, {"groups": groups})


def arrays_task(config: Config) -> EmbeddedTask:
    """Classification on given arrays: logistic regression fit on data.embeddings, scored on data.eval_embeddings."""
    train_x, train_y = check_arrays(*load_arrays(config.data.embeddings), "data.embeddings")
    test_x, test_y = check_arrays(
        *load_arrays(config.data.eval_embeddings, "data.eval_embeddings"), "data.eval_embeddings"
    )
    if train_y is None or test_y is None:
        raise ValueError("data.embeddings and data.eval_embeddings need `labels` to be scored (classification)")
    name = Path(config.data.eval_embeddings).stem
    arrays = {"train": train_x, "test": test_x}
    return EmbeddedTask(name, "classification", arrays, {"train_labels": train_y, "test_labels": test_y})


def evaluation_config(config: Config) -> Config:
    """The config whose backbone embeds the evaluation texts: a finetuned run's own backbone when it has one."""
    folder = Path(config.output_dir) / "backbone"
    if config.train.backbone == "frozen" or not folder.is_dir():
        return config
    return dataclasses.replace(config, backbone=dataclasses.replace(config.backbone, name=str(folder)))


def fill(config: Config) -> list[str]:
    """Embed what a run of `config` reads: data.task's training rows and the evaluation split of data.task and of
    every eval.tasks entry. Returns what was embedded, one line each."""
    done = []
    if config.data.mixture or config.data.unlabeled:
        data = mixture_training_data(config)
        done.append(f"{data.source}: {len(data)} training rows ({int(data.unlabeled.sum())} unlabelled)")
    names = list(dict.fromkeys(([config.data.task] if config.data.task else []) + list(config.eval.tasks)))
    for name in names:
        prepared = prepare_task(name, config, for_training=name == config.data.task)
        if prepared.train is not None:
            done.append(f"{name}/train: {len(prepared.train)} training rows")
        task = prepared.task
        done.append(
            f"{name}/{get_task(name, config.data.tasks).test_split}: "
            + ", ".join(f"{role} {task.arrays[role].shape[0]}" for role in ROLES[task.type])
        )
    return done


def write_arrays(config: Config, out: str | Path) -> list[Path]:
    """data.task's train split embedded as `out`, a .npz with `embeddings` (N, d) and `labels` (N,): what
    data.embeddings reads. A classification task's test split goes beside it as <name>_test.npz (for
    data.eval_embeddings). Returns the files written (`csrv2 embed --out`; configs/toy.yaml trains on them)."""
    out = Path(out)
    if out.suffix != ".npz":
        raise ConfigError(f"--out {out}: name a .npz file (data.embeddings reads .npz with embeddings and labels)")
    if not config.data.task or config.data.mixture:
        raise ConfigError("--out writes one task's embeddings: set data.task (not data.mixture)")
    prepared = prepare_task(config.data.task, config)
    parts = [(out, prepared.train.embeddings, prepared.train.labels)]
    task = prepared.task
    if task.type in ("classification", "image_classification"):
        test = out.with_name(f"{out.stem}_test.npz")
        parts.append((test, task.arrays["test"], task.gold["test_labels"]))

    def npz(x, y):
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to the temporary name
                np.savez(f, embeddings=_f32(x), labels=np.asarray(y, dtype=np.int64))

        return write

    return [atomic_write(path, npz(x, y)) for path, x, y in parts]


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)
