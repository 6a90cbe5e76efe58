#!/usr/bin/env bash
# Regenerates the fuzz seed corpus Tests/Fuzz/corpus/TARGET/ (docs/reliability.md, "Fuzzing"):
#   writer-*  small valid files from contrast's own writers (`contrast-fuzz seeds`);
#   real-*    files of a real `contrast prepare` (Fashion-MNIST and .npy) and of a tiny training run
#             on one and on two MPI ranks (checkpoint manifests and shards), numpy-written .npy files
#             (needs python3 with numpy), that run's model exported as safetensors, the repository's
#             configs and a run's resolved config, PNG and JPEG files of every kind PIL writes
#             (tools/image_fixtures.py; needs .venv-verify, launch/verify-python.sh, else they are kept as they are),
#             tar shards from Python's tarfile and webdataset's TarWriter, CSV and JSONL from Python's csv and json modules.
#   format10-*  data sets of format 1.0 (kept, as the checkpoint format10-* are: readers still take them).
# Near-valid seeds (near-*) are written by hand and kept. Run from anywhere; needs a debug build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

swift build
bin=$(swift build --show-bin-path)
corpus=Tests/Fuzz/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
find "$corpus" -type f \( -name 'writer-*' -o -name 'real-*' \) -delete 2>/dev/null || true
"$bin/contrast-fuzz" seeds "$corpus"

# .npy files as numpy writes them: every dtype contrast reads, format versions 1.0, 2.0 and 3.0, 0-d and empty.
python3 - "$work" <<'EOF'
import sys, numpy as np
d = sys.argv[1]; rng = np.random.default_rng(0)
np.save(f"{d}/features.npy", rng.normal(size=(32, 4)).astype(np.float32))
np.save(f"{d}/labels.npy", rng.integers(0, 3, size=32).astype(np.int64))
np.save(f"{d}/u1.npy", rng.integers(0, 255, size=(3, 2, 2)).astype(np.uint8))
np.save(f"{d}/f8.npy", rng.normal(size=(2, 3)))
np.lib.format.write_array(open(f"{d}/v2.npy", "wb"), np.arange(6, dtype="<i8").reshape(2, 3), version=(2, 0))
np.lib.format.write_array(open(f"{d}/v3.npy", "wb"), np.arange(4, dtype="<f4"), version=(3, 0))
np.save(f"{d}/scalar.npy", np.float32(3.5))
np.save(f"{d}/empty.npy", np.zeros((0, 5), dtype=np.float32))
EOF
for name in features labels u1 f8 v2 v3 scalar empty; do cp "$work/$name.npy" "$corpus/npy/real-numpy-$name.npy"; done

# webdataset shards as Python's tarfile writes them (GNU long names, PAX headers, non-ASCII names) and,
# when launch/verify-python.sh's venv has it, as webdataset's TarWriter writes them; text tables as
# Python's csv and json modules write them (the first byte picks format and columns: FuzzTarget.readText).
mkdir -p "$corpus/tar" "$corpus/text"
/usr/bin/python3 - "$corpus" <<'EOF'
import csv, io, json, sys, tarfile
corpus = sys.argv[1]
for fmt in ("GNU", "PAX"):
    with tarfile.open(f"{corpus}/tar/real-tarfile-{fmt.lower()}.tar", "w", format=getattr(tarfile, fmt + "_FORMAT")) as tar:
        for key, ext, data in [("d/" + "k" * 110, "jpg", b"\xff\xd8\xff\xe0x"), ("d/" + "k" * 110, "txt", b"long"),
                               ("ключ", "PNG", b"\x89PNG\r\n\x1a\n"), ("ключ", "cls", b"4"), ("ключ", "txt", "ü".encode())]:
            info = tarfile.TarInfo(f"{key}.{ext}"); info.size = len(data); info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
rows = [["anchor", "positive", "score", "label"], ["a, \"b\"", "two\nlines", "0.5", "cat"], ["x", "y", "1", "7"]]
out = io.StringIO(); csv.writer(out).writerows(rows)
open(f"{corpus}/text/real-python-csv", "wb").write(bytes([4 | 8 | 32 | 64]) + out.getvalue().encode())
lines = [json.dumps({"anchor": "e\u0301", "positive": "p", "negative": "n", "score": 2.5, "label": 1}) for _ in range(2)]
open(f"{corpus}/text/real-python-jsonl", "wb").write(bytes([2 | 16 | 32 | 64]) + "\n".join(lines).encode() + b"\n")
EOF
verify_python=$(launch/verify-python.sh 2>/dev/null | tail -1)
if "$verify_python" -c "import webdataset" 2>/dev/null; then
    "$verify_python" - "$corpus" <<'EOF'
import sys, webdataset as wds
with wds.TarWriter(f"{sys.argv[1]}/tar/real-webdataset.tar") as sink:
    for i in range(3):
        sink.write({"__key__": f"{i:06d}", "jpg": b"\xff\xd8\xff\xe0" + bytes([i]), "txt": f"caption {i}", "cls": i,
                    "json": {"caption": f"json {i}"}})
EOF
else
    echo "fuzz-seeds: no webdataset in $verify_python; real-webdataset.tar not regenerated" >&2
fi

# Data sets from `contrast prepare`: 8 Fashion-MNIST images in 2 shards, and the .npy features with labels.
"$bin/contrast" prepare fashion-mnist --out "$work/fm" --limit 8 --shards 2 >/dev/null
"$bin/contrast" prepare npy --features "$work/features.npy" --labels "$work/labels.npy" --out "$work/set" --shards 2 >/dev/null
for set in fm/train set; do
    name=real-prepare-${set//\//-}
    cp "$work/$set/dataset.json" "$corpus/dataset-manifest/$name.json"
    "$bin/contrast-fuzz" pack "$corpus/dataset/$name" "$work/$set/dataset.json" "$work/$set"/shard-*.bin
    cp "$corpus/dataset/$name" "$corpus/dataset-frames/$name"
    mkdir -p "$corpus/dataset-stream"
    cp "$corpus/dataset/$name" "$corpus/dataset-stream/$name"
done

# Checkpoints of a tiny training run on the .npy data set: one rank (one shard) and two ranks (two shards).
tiny=(--config configs/smoke.yaml --set data.dataset=prepared --set "data.path=$work/set" --set data.virtual_shards=2
      --set data.train_limit=0 --set data.test_limit=0 --set 'model.hidden=[4]' --set model.representation=4
      --set 'model.projection=[4, 3]' --set train.epochs=1 --set eval.knn_every_epochs=0)
"$bin/contrast" train "${tiny[@]}" --set "run_dir=$work/run1" --set data.batch_per_rank=8 >/dev/null
launch/mpirun.sh -np 2 "$bin/contrast" train "${tiny[@]}" --set "run_dir=$work/run2" --set data.batch_per_rank=4 \
    --set optimizer.kind=sgd >/dev/null
for run in run1 run2; do
    checkpoint=$(ls -d "$work/$run"/checkpoints/step-*)
    cp "$checkpoint/manifest.json" "$corpus/checkpoint-manifest/real-$run.json"
    "$bin/contrast-fuzz" pack "$corpus/checkpoint/real-$run" "$checkpoint/manifest.json" "$checkpoint"/shard-*.bin
done

# The one-rank run's model as `contrast export` writes it.
"$bin/contrast" export --checkpoint "$work/run1" --out "$corpus/safetensors/real-export.safetensors" >/dev/null

# Configs: the repository's, and a run's resolved config.
mkdir -p "$corpus/config"
for config in configs/*.yaml; do cp "$config" "$corpus/config/real-$(basename "$config")"; done
cp "$work/run1/config.yaml" "$corpus/config/real-resolved.yaml"
# PNG and JPEG files as PIL writes them: every PNG colour type and depth, JPEG gray / 4:2:0 / 4:4:4 /
# progressive / CMYK, and the eight EXIF orientations.
python=${CONTRAST_VERIFY_PYTHON:-.venv-verify/bin/python}
if "$python" -c "import PIL" 2>/dev/null; then
    "$python" tools/image_fixtures.py decode "$work/images" && "$python" tools/image_fixtures.py exif "$work/exif"
    mkdir -p "$corpus/png" "$corpus/jpeg"
    for file in "$work"/images/*.png; do cp "$file" "$corpus/png/real-pil-$(basename "$file")"; done
    for file in "$work"/images/*.jpg "$work"/exif/*.jpg; do cp "$file" "$corpus/jpeg/real-pil-$(basename "$file")"; done
    # A CMYK JPEG is refused (clearly), so it is not a valid seed.
    mv "$corpus/jpeg/real-pil-jpeg-cmyk.jpg" "$corpus/jpeg/near-pil-jpeg-cmyk.jpg"
else
    echo "fuzz-seeds: $python has no PIL: the png and jpeg seeds stay as they are" >&2
fi
echo "seed corpus: $(find "$corpus" -type f | wc -l) files in $corpus"
