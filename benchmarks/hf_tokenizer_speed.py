"""The `tokenizers` package's BERT WordPiece tokenizer (BertTokenizerFast's backend) on one thread:
MB/s of UTF-8 text encoded, every line of CORPUS a text, [CLS] ... [SEP], no truncation.

  python benchmarks/hf_tokenizer_speed.py VOCAB CORPUS [--cased] [--repeats 5] [--warmup 1]

Prints one JSON object: the median seconds of encode_batch over all lines (one call, so Python's
per-call cost is out of it) and of encode called per line, and MB/s of each.
"""
import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

import argparse
import json
import statistics
import time

from tokenizers import BertWordPieceTokenizer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("vocab")
    parser.add_argument("corpus")
    parser.add_argument("--cased", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    tokenizer = BertWordPieceTokenizer(args.vocab, lowercase=not args.cased)
    with open(args.corpus, encoding="utf-8", newline="\n") as file:
        lines = [line for line in file.read().split("\n") if line]
    size = sum(len(line.encode("utf-8")) for line in lines)

    def timed(body):
        seconds = []
        for index in range(args.warmup + args.repeats):
            start = time.perf_counter()
            body()
            if index >= args.warmup:
                seconds.append(time.perf_counter() - start)
        return statistics.median(seconds)

    tokens = sum(len(encoding.ids) for encoding in tokenizer.encode_batch(lines))
    batch = timed(lambda: tokenizer.encode_batch(lines))
    single = timed(lambda: [tokenizer.encode(line) for line in lines])
    print(json.dumps({"bench": "tokenizers", "texts": len(lines), "bytes": size, "tokens": tokens,
                      "vocabulary": tokenizer.get_vocab_size(), "lowercase": not args.cased,
                      "batch_median_s": batch, "batch_megabytes_per_second": size / batch / 1e6,
                      "per_text_median_s": single, "per_text_megabytes_per_second": size / single / 1e6}))


if __name__ == "__main__":
    main()
