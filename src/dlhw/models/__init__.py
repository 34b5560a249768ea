"""Models: one contract (`base.Model`), one module per kind, found through `MODEL_KINDS`.

  base       the contract: params, loss(X, y) -> (data_loss, grads), evaluate, state
  layers     forward/backward pairs (affine, activations, batch norm, dropout, softmax CE)
  softmax    softmax regression
  mlp        the fully-connected network
  linear     linear and logistic regression, Newton's method
  optim      sgd and momentum updates
  gradcheck  centred finite differences against a model's analytic gradients
"""
from __future__ import annotations

import importlib

import numpy as np

from dlhw.models.base import EVAL_CHUNK, Model
from dlhw.models.softmax import SoftmaxRegression

# kind -> "module:Class"; every class has from_config(cfg, n_features, n_classes, rng)
MODEL_KINDS: dict[str, str] = {
    "softmax": "dlhw.models.softmax:SoftmaxRegression",
    "mlp": "dlhw.models.mlp:MLP",
    "linear": "dlhw.models.linear:LinearRegression",
    "logistic": "dlhw.models.linear:LogisticRegression",
}


def model_class(kind: str) -> type[Model]:
    module, _, name = MODEL_KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def build_model(cfg, n_features: int, n_classes: int) -> Model:
    """A fresh model for `cfg`; initialisation seeded by (train.seed, 'init')."""
    rng = np.random.default_rng([cfg.train.seed, 1])  # stream 1 = initialisation (stream 0 = shuffling)
    return model_class(cfg.model.kind).from_config(cfg, n_features, n_classes, rng)


__all__ = ["EVAL_CHUNK", "MODEL_KINDS", "Model", "SoftmaxRegression", "build_model", "model_class"]
