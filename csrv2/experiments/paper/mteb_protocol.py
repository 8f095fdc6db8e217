"""Score a finished grid's sparse heads both ways on the same codes: csrv2's scoring and MTEB's protocol.

    python scripts/mteb_protocol.py --config configs/paper/text_small.yaml [key=value ...] [--method csrv2-linear]

Run it after `csrv2 eval` with the same config and overrides (it reads the heads under <output_dir>/heads and the
cached embeddings; nothing is trained or embedded again). Per task and k it prints csrv2's score (csrv2.evaluation.scoring on
L2-normalised codes, as in results.json) and the score MTEB's protocol gives the raw codes that csrv2.evaluation.mteb.MtebEncoder
hands mteb, computed with mteb 2.26's own pieces where they are callable on arrays (docs/reproduction.md):
classification: mteb's undersampling (8 per label, 10 experiments, seed 42) and LogisticRegression(max_iter=100);
clustering: mteb's _evaluate_clustering_bootstrapped (MiniBatchKMeans, 10 samples with replacement, size = the split);
pairs: max AP over cosine, dot, -Euclidean, -Manhattan; retrieval / reranking: pytrec_eval ndcg_cut_10 / map_cut_1000
with document ids d<row>; STS: Spearman of cosine (the same as csrv2's).
"""

from __future__ import annotations

import argparse
import random
from types import SimpleNamespace

import numpy as np
import pytrec_eval
import torch
from datasets import Dataset
from mteb.abstasks.classification import AbsTaskClassification
from mteb.abstasks.clustering import _evaluate_clustering_bootstrapped
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances

from csrv2.data.prepare import prepare_task
from csrv2.data.tasks import ROLES
from csrv2.evaluation.scoring import cosine_matrix, normalize_rows, score_features
from csrv2.experiments.paper.grid import GridConfig
from csrv2.head.sparse_head import SparseHead

SEED = 42


def mteb_classification(train_x, train_y, test_x, test_y, samples_per_label=8, n_experiments=10):
    task = SimpleNamespace(seed=SEED, samples_per_label=samples_per_label, label_column_name="label")
    labels = Dataset.from_dict({"label": [int(y) for y in train_y]})
    idxs, accs = None, []
    for i in range(n_experiments):
        _, idxs, chosen = AbsTaskClassification._undersample_data(task, labels, i, idxs)
        clf = LogisticRegression(max_iter=100, random_state=SEED).fit(train_x[chosen], np.asarray(train_y)[chosen])
        accs.append(float((clf.predict(test_x) == np.asarray(test_y)).mean()))
    return float(np.mean(accs))


def mteb_clustering(x, labels):
    scores, _ = _evaluate_clustering_bootstrapped(
        x,
        [[y] for y in np.asarray(labels).tolist()],
        n_clusters=10,
        cluster_size=len(labels),
        kmean_batch_size=512,
        max_depth=None,
        rng_state=random.Random(SEED),
        seed=SEED,
    )
    return float(np.mean(scores["v_measure"]["Level 0"]))


def mteb_pairs(a, b, labels):
    scores = [
        1 - paired_cosine_distances(a, b),
        (a * b).sum(axis=1),
        -paired_euclidean_distances(a, b),
        -paired_manhattan_distances(a, b),
    ]
    return max(float(average_precision_score(labels, s)) for s in scores)


def trec(qrels, run, measure):
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {measure.replace("_cut_", "_cut.")}).evaluate(run)
    return float(np.mean([v[measure] for v in per_query.values()]))


def mteb_retrieval(q, d, relevance):
    s = cosine_matrix(q, d)
    qrels = {f"q{i}": {f"d{j}": int(g) for j, g in rel.items()} for i, rel in enumerate(relevance) if rel}
    run = {qid: {f"d{j}": float(v) for j, v in enumerate(s[int(qid[1:])])} for qid in qrels}
    return trec(qrels, run, "ndcg_cut_10")


def mteb_reranking(q, d, groups):
    qrels, run = {}, {}
    for n, (row, docs, relevant) in enumerate(groups):
        s = cosine_matrix(q[row : row + 1], d[np.asarray(docs)])[0]
        qrels[f"q{n}"] = {f"d{j}": int(r) for j, r in zip(docs, relevant)}
        run[f"q{n}"] = {f"d{j}": float(v) for j, v in zip(docs, s)}
    return trec(qrels, run, "map_cut_1000")


def mteb_score(task, raw):
    g, t = task.gold, task.type
    if t == "classification":
        return mteb_classification(raw["train"], g["train_labels"], raw["test"], g["test_labels"])
    if t == "clustering":
        return mteb_clustering(raw["test"], g["labels"])
    if t == "pair_classification":
        return mteb_pairs(raw["text1"], raw["text2"], np.asarray(g["labels"]))
    if t == "retrieval":
        return mteb_retrieval(raw["queries"], raw["corpus"], g["relevance"])
    if t == "reranking":
        return mteb_reranking(raw["queries"], raw["docs"], g["groups"])
    if t == "sts":
        a, b = normalize_rows(raw["text1"]), normalize_rows(raw["text2"])
        return float(spearmanr((a * b).sum(axis=1), np.asarray(g["scores"], dtype=float)).statistic)
    raise ValueError(t)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--method", default="csrv2-linear")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    grid = GridConfig.from_yaml(args.config, args.overrides)
    print("| task (type) | k | csrv2 scoring | MTEB protocol |\n|---|---|---|---|")
    for name in grid.tasks:
        task = prepare_task(
            name, grid.run_config(args.method, None, grid.seeds[0], name), grid.max_train, grid.max_eval
        ).task
        for k in grid.ks:
            head = SparseHead.from_pretrained(grid.run_folder(args.method, k, grid.seeds[0], name)).eval()
            raw = {}
            for role in ROLES[task.type]:
                x = torch.from_numpy(np.asarray(task.arrays[role], dtype=np.float32))
                with torch.no_grad():
                    raw[role] = head.encode(x, k).to_dense().numpy()  # what MtebEncoder hands mteb
            ours = score_features(task, {r: normalize_rows(v) for r, v in raw.items()}, grid.clustering_seeds)
            print(f"| {name} ({task.type}) | {k} | {100 * ours:.1f} | {100 * mteb_score(task, raw):.1f} |", flush=True)
