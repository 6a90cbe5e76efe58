#!/usr/bin/env python3
"""TF-IDF retrieval baseline on a prepared text set's split (issue 22), with the metrics contrast's
retrieval evaluation logs (Sources/Training/TextRetrieval.swift, RankingMetrics):

  queries   the split's `text` values, one per pair
  corpus    the distinct `positive` values (equal texts are one document)
  relevant  the query's own positive and every positive sharing its `group` (when the set has one)
  scores    cosine of TF-IDF vectors (scikit-learn's TfidfVectorizer, fitted on queries and corpus)
  metrics   recall@1/5/10 (relevant found in the k best over relevant, averaged), MRR@10, nDCG@10
            (binary gains), ties broken to the lower document index

  .venv-verify/bin/python benchmarks/tfidf_retrieval.py data/wordnet/test [--analyzer word|char_wb] [--lowercase|--cased]

Reads the shard files itself (dataset.json, zstd frames through the zstd command; docs/data-format.md).
Prints one line of metrics and one JSON object.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import zlib

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer


def frame(data, info):
    raw = data[info["offset"]:info["offset"] + info["bytes"]]
    if not info["encoding"].endswith("zstd"):
        raise SystemExit(f"unknown frame encoding {info['encoding']}")
    out = subprocess.run(["zstd", "-d", "-c", "-q"], input=raw, stdout=subprocess.PIPE, check=True).stdout
    if info["encoding"] == "shuffle4+zstd":  # byte planes back to float32 elements
        n = len(out) // 4
        out = np.frombuffer(out, dtype=np.uint8).reshape(4, n).T.copy().tobytes()
    return out


def read_split(directory):
    manifest = json.load(open(os.path.join(directory, "dataset.json")))
    fields = {f["name"]: f for f in manifest.get("fields", [])}
    if "text" not in fields or "positive" not in fields:
        raise SystemExit(f"{directory}: not a text set with text and positive fields (contrast prepare text|wordnet|freedict)")
    columns = {"text": [], "positive": [], "group": []}
    for shard in manifest["shards"]:
        data = open(os.path.join(directory, shard["file"]), "rb").read()
        crc = "0x%08x" % (zlib.crc32(data) & 0xFFFFFFFF)
        if crc != shard["crc32"]:
            raise SystemExit(f"{directory}/{shard['file']}: crc32 {crc}, the manifest says {shard['crc32']}")
        parts = {}
        for info in shard["frames"]:
            parts[(info["section"], info.get("part"))] = frame(data, info)
        for name in ("text", "positive"):
            offsets = np.frombuffer(parts[(name, "offsets")], dtype="<i8")
            values = parts[(name, "data")]
            columns[name] += [values[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(len(offsets) - 1)]
        if "group" in fields:
            columns["group"] += np.frombuffer(parts[("group", None)], dtype="<i8").tolist()
    return columns


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("split", help="a prepared text set's folder (e.g. data/wordnet/test)")
    parser.add_argument("--analyzer", choices=["word", "char_wb"], default="word")
    parser.add_argument("--cased", action="store_true", help="keep case (default: lower-case)")
    parser.add_argument("--chunk", type=int, default=512)
    arguments = parser.parse_args()
    columns = read_split(arguments.split)
    queries, positives, groups = columns["text"], columns["positive"], columns["group"] or None
    document_of, corpus, first = [], [], {}
    for text in positives:
        if text not in first:
            first[text] = len(corpus)
            corpus.append(text)
        document_of.append(first[text])
    by_group = {}
    if groups:
        for q, g in enumerate(groups):
            by_group.setdefault(g, set()).add(document_of[q])
    relevant = [(by_group[groups[q]] if groups else set()) | {document_of[q]} for q in range(len(queries))]

    vectorizer = TfidfVectorizer(analyzer=arguments.analyzer, lowercase=not arguments.cased,
                                 ngram_range=(1, 1) if arguments.analyzer == "word" else (3, 5))
    vectorizer.fit(queries + corpus)
    q_matrix, d_matrix = vectorizer.transform(queries), vectorizer.transform(corpus)  # rows L2-normalised
    ks, cutoff = [1, 5, 10], 10
    recall, mrr, ndcg = np.zeros(len(ks)), 0.0, 0.0
    for start in range(0, len(queries), arguments.chunk):
        scores = (q_matrix[start:start + arguments.chunk] @ d_matrix.T).toarray()
        for row in range(scores.shape[0]):
            # Best first, ties to the lower index: a stable sort of the negated scores.
            ranked = np.argsort(-scores[row], kind="stable")[:max(cutoff, max(ks))]
            wanted = relevant[start + row]
            for i, k in enumerate(ks):
                recall[i] += sum(1 for d in ranked[:k] if d in wanted) / len(wanted)
            hits = [p for p, d in enumerate(ranked[:cutoff]) if d in wanted]
            if hits:
                mrr += 1 / (hits[0] + 1)
            ideal = sum(1 / math.log2(p + 2) for p in range(min(len(wanted), cutoff)))
            ndcg += sum(1 / math.log2(p + 2) for p in hits) / ideal
    n = len(queries)
    result = {"split": arguments.split, "queries": n, "documents": len(corpus), "analyzer": arguments.analyzer,
              "recall_at_1": recall[0] / n, "recall_at_5": recall[1] / n, "recall_at_10": recall[2] / n,
              "mrr_at_10": mrr / n, "ndcg_at_10": ndcg / n}
    print(f"TF-IDF ({arguments.analyzer}) retrieval of {n} texts among {len(corpus)} positives: recall@1 {100 * result['recall_at_1']:.2f}%, "
          f"@5 {100 * result['recall_at_5']:.2f}%, @10 {100 * result['recall_at_10']:.2f}%, MRR@10 {result['mrr_at_10']:.4f}, "
          f"nDCG@10 {result['ndcg_at_10']:.4f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
