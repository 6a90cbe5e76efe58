#!/usr/bin/env python3
"""transformers' and sentence-transformers' side of contrast's BERT checks (docs/text.md).

  check_bert.py run DIR IDS MASK TYPES OUT
      Loads DIR with transformers.BertModel.from_pretrained (eval mode: no dropout) and writes, for the
      int64 [N, T] ids, mask and token types in IDS, MASK, TYPES, OUT/hidden.npy (last_hidden_state, N x T x D).
  check_bert.py sentence DIR IDS MASK TYPES OUT
      As run, and OUT/sentence.npy: SentenceTransformer(DIR)'s sentence_embedding of the same ids (N x R).
  check_bert.py texts DIR TEXTS OUT
      Tokenizes the lines of TEXTS with BertTokenizerFast.from_pretrained(DIR) (padding and truncation to
      the directory's max length), writes OUT/ids.npy, OUT/mask.npy, OUT/types.npy, OUT/hidden.npy
      (BertModel) and OUT/sentence.npy (SentenceTransformer(DIR).encode of the same lines, N x R).
  check_bert.py save-random DIR VOCAB_SIZE HIDDEN LAYERS HEADS FFN MAX_POSITION
      Saves a randomly initialised BertModel (LayerNorms moved off 1 and 0) with save_pretrained.
"""
import json
import os
import sys

import numpy as np
import torch


def run(directory, ids, mask, types, out):
    from transformers import BertModel
    model = BertModel.from_pretrained(directory).eval()
    with torch.no_grad():
        hidden = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                       token_type_ids=torch.from_numpy(types)).last_hidden_state
    np.save(os.path.join(out, "hidden.npy"), hidden.numpy().astype(np.float32))


def main():
    command = sys.argv[1]
    torch.manual_seed(0)
    if command == "run":
        directory, ids, mask, types, out = sys.argv[2:7]
        run(directory, np.load(ids), np.load(mask), np.load(types), out)
    elif command == "sentence":
        from sentence_transformers import SentenceTransformer
        directory, ids, mask, types, out = sys.argv[2:7]
        ids, mask, types = np.load(ids), np.load(mask), np.load(types)
        run(directory, ids, mask, types, out)
        model = SentenceTransformer(directory, device="cpu").eval()
        with torch.no_grad():
            features = model({"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                              "token_type_ids": torch.from_numpy(types)})
        np.save(os.path.join(out, "sentence.npy"), features["sentence_embedding"].numpy().astype(np.float32))
    elif command == "texts":
        from transformers import BertTokenizerFast
        from sentence_transformers import SentenceTransformer
        directory, texts, out = sys.argv[2:5]
        lines = [line.rstrip("\n") for line in open(texts, encoding="utf-8")]
        tokenizer = BertTokenizerFast.from_pretrained(directory)
        encoded = tokenizer(lines, padding="max_length", truncation=True, return_tensors="np")
        ids = encoded["input_ids"].astype(np.int64)
        mask = encoded["attention_mask"].astype(np.int64)
        types = encoded["token_type_ids"].astype(np.int64)
        for name, value in [("ids", ids), ("mask", mask), ("types", types)]:
            np.save(os.path.join(out, name + ".npy"), value)
        run(directory, ids, mask, types, out)
        model = SentenceTransformer(directory, device="cpu")
        # SentenceTransformer pads to the longest line, not to max_length: the padding is masked, so h is the same.
        sentence = model.encode(lines, batch_size=len(lines), convert_to_numpy=True)
        np.save(os.path.join(out, "sentence.npy"), sentence.astype(np.float32))
        print(json.dumps({"lines": len(lines), "max_seq_length": model.max_seq_length,
                          "modules": [type(m).__name__ for m in model]}))
    elif command == "save-random":
        directory = sys.argv[2]
        vocab, hidden, layers, heads, ffn, positions = map(int, sys.argv[3:9])
        from transformers import BertConfig, BertModel
        config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=ffn, max_position_embeddings=positions)
        model = BertModel(config)
        # Norms off 1 and 0, so a LayerNorm loaded into the wrong place shows.
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "LayerNorm" in name:
                    parameter.add_(0.1 * torch.randn_like(parameter))
        model.save_pretrained(directory)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
