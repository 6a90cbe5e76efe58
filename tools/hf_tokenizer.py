"""The reference for contrast's WordPiece tokenizer (Tests/TextTests): transformers'
BertTokenizerFast (the `tokenizers` package underneath) on the same vocab.txt.

  hf_tokenizer.py encode VOCAB IN OUT --lowercase 0|1 [--max-length N] [--truncate 0|1]
      IN: JSON lines, each {"text": ...} or {"text": ..., "pair": ...}.
      OUT: one line per row: "ids|type ids|attention mask", numbers space-separated
      (padded to N with padding="max_length" when N is given).
  hf_tokenizer.py words IN OUT --lowercase 0|1
      OUT: one JSON list per row: the words of BertNormalizer then BertPreTokenizer.
"""
import argparse
import json
import os
import warnings

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")


def rows(path):
    with open(path, encoding="utf-8", newline="\n") as file:
        return [json.loads(line) for line in file.read().split("\n") if line]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["encode", "words"])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--lowercase", type=int, default=1)
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--truncate", type=int, default=1)
    args = parser.parse_args()
    if args.command == "words":
        from tokenizers.normalizers import BertNormalizer
        from tokenizers.pre_tokenizers import BertPreTokenizer
        source, out = args.paths
        normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=bool(args.lowercase))
        pre = BertPreTokenizer()
        with open(out, "w", encoding="utf-8", newline="\n") as file:
            for row in rows(source):
                words = [word for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(row["text"]))]
                file.write(json.dumps(words) + "\n")
        return
    from transformers import BertTokenizerFast
    vocab, source, out = args.paths
    tokenizer = BertTokenizerFast(vocab_file=vocab, do_lower_case=bool(args.lowercase))
    data = rows(source)
    texts = [row["text"] for row in data]
    pairs = [row["pair"] for row in data] if data and "pair" in data[0] else None
    options = {}
    if args.max_length is not None:
        options = dict(max_length=args.max_length, padding="max_length", truncation="longest_first" if args.truncate else False)
    encoded = tokenizer(texts, pairs, return_token_type_ids=True, return_attention_mask=True, **options)
    with open(out, "w", encoding="utf-8", newline="\n") as file:
        for ids, types, mask in zip(encoded["input_ids"], encoded["token_type_ids"], encoded["attention_mask"]):
            file.write(" ".join(map(str, ids)) + "|" + " ".join(map(str, types)) + "|" + " ".join(map(str, mask)) + "\n")


if __name__ == "__main__":
    main()
