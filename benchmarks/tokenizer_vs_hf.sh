#!/usr/bin/env bash
# WordPiece tokenizer throughput, one thread: `contrast bench tokenizer` against the `tokenizers`
# package (benchmarks/hf_tokenizer_speed.py: BertWordPieceTokenizer, TOKENIZERS_PARALLELISM=false,
# RAYON_NUM_THREADS=1) on the same corpus and vocab.txt, alternating rounds; prints the medians
# over rounds of each round's median MB/s and their ratio.
#
#   [CONTRAST=binary] [PYTHON=python] benchmarks/tokenizer_vs_hf.sh [ROUNDS] [CORPUS] [VOCAB]
#
# Defaults: 5 rounds; CORPUS: Debian's licence texts (/usr/share/common-licenses) and a mixed
# multilingual sample, repeated to about 8 MB of lines; VOCAB: learned from CORPUS by
# `contrast vocab --size 8000`. PYTHON defaults to launch/verify-python.sh's venv (tokenizers 0.19).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-5} corpus=${2:-} vocab=${3:-}
contrast=${CONTRAST:-.build/release/contrast}
python=${PYTHON:-${CONTRAST_VERIFY_PYTHON:-.venv-verify/bin/python}}
[[ -x $contrast ]] || { echo "build first: swift build -c release" >&2; exit 1; }
"$python" -c 'import tokenizers' 2>/dev/null || { echo "$python cannot import tokenizers: run launch/verify-python.sh, or set PYTHON" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -z $corpus ]]; then
    corpus=$work/corpus.txt
    "$python" - "$corpus" <<'PY'
import glob, sys
lines = []
for path in sorted(glob.glob("/usr/share/common-licenses/*")):
    try:
        lines += [l.strip() for l in open(path, encoding="utf-8") if l.strip()]
    except (UnicodeDecodeError, IsADirectoryError):
        pass
lines += ["Café au lait à Zürich, naïve résumé — Ångström's “quoted” text.", "中文分词测试，日本語のテキスト、한국어 문장.",
          "Москва и Санкт-Петербург; Ελληνικά κείμενα!", "Emoji 😀👍🏽 and numbers 3.14, 1,000,000 (2026-12-07)."] * 50
text, size = [], 0
while size < 8_000_000:
    for line in lines:
        text.append(line)
        size += len(line.encode()) + 1
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(text) + "\n")
PY
fi
if [[ -z $vocab ]]; then
    vocab=$work/vocab.txt
    $contrast vocab --size 8000 --out "$vocab" "$corpus" >&2
fi

ours=$work/ours.jsonl theirs=$work/theirs.jsonl
for ((r = 1; r <= rounds; r++)); do
    $contrast bench tokenizer --vocab "$vocab" --json --repeats 5 --warmup 1 "$corpus" >> "$ours"
    "$python" benchmarks/hf_tokenizer_speed.py "$vocab" "$corpus" --repeats 5 --warmup 1 >> "$theirs"
done
"$python" - "$ours" "$theirs" <<'PY'
import json, statistics, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
theirs = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]
med = statistics.median
first = ours[0]
print(f"{first['machine']['cpu_model']}; {len(ours)} rounds, each the median of 5 passes after 1 warm-up")
print(f"corpus {first['texts']} texts, {first['bytes'] / 1e6:.1f} MB; vocabulary {first['vocabulary']}; tokens ours {first['tokens']}, tokenizers {theirs[0]['tokens']}")
c = med([o["megabytes_per_second"] for o in ours])
b = med([t["batch_megabytes_per_second"] for t in theirs])
s = med([t["per_text_megabytes_per_second"] for t in theirs])
print(f"contrast (batches of 256)            {c:7.2f} MB/s")
print(f"tokenizers encode_batch (one call)  {b:7.2f} MB/s   contrast / tokenizers {c / b:.2f}x")
print(f"tokenizers encode per text (Python) {s:7.2f} MB/s   contrast / tokenizers {c / s:.2f}x")
PY
