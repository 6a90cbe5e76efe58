"""sentence-transformers' MultipleNegativesRankingLoss (or its symmetric form) on fixed embeddings,
for Tests/ContrastiveTests/PairLossSentenceTransformersTests.swift.

Reads a JSON object {anchors, positives, negatives (may be empty), dimension, scale, symmetric} of
flat row-major float lists; a stand-in model returns those rows as the sentence embeddings, so the
loss module runs exactly as in training. Prints {loss, anchors, positives, negatives}: the loss
and its gradients with respect to the rows."""
import json
import sys

import torch
from sentence_transformers import losses

spec = json.load(open(sys.argv[1]))
d = spec["dimension"]


def rows(name):
    values = torch.tensor(spec[name], dtype=torch.float64).reshape(-1, d)
    return values.requires_grad_(True)


columns = [rows("anchors"), rows("positives")] + ([rows("negatives")] if spec["negatives"] else [])


class Fixed(torch.nn.Module):
    """The model: column k's features select the k-th table of embeddings."""

    def forward(self, features):
        return {"sentence_embedding": columns[features["column"]]}


model = Fixed()
kind = losses.MultipleNegativesSymmetricRankingLoss if spec["symmetric"] else losses.MultipleNegativesRankingLoss
loss_module = kind(model, scale=spec["scale"])
loss = loss_module([{"column": k} for k in range(len(columns))], labels=None)
loss.backward()
names = ["anchors", "positives", "negatives"]
out = {"loss": loss.item()}
for name, column in zip(names, columns):
    out[name] = column.grad.reshape(-1).tolist()
print(json.dumps(out))
