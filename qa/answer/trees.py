"""A tree ensemble evaluated with numpy: what LightGBM trained, read from plain JSON, no LightGBM needed.

Each tree in the ranker file is a dict of equal-length node arrays
(``feature``, ``threshold``, ``left``, ``right``, ``default_left``,
``missing``: 0 none, 1 zero, 2 NaN) and a ``leaves`` array. A child ``c >= 0``
is a node of the same tree, ``c < 0`` the leaf ``~c``. ``training/ranker/trees.py``
writes this form from a LightGBM dump; ``TreeEnsemble.parse`` checks it and
joins all trees into flat arrays so that every row walks every tree at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_NODE_KEYS = ("threshold", "left", "right", "default_left", "missing")


@dataclass(frozen=True, eq=False)
class TreeEnsemble:
    """All trees' nodes in flat arrays; ``roots[t]`` is tree t's first node (or ``~leaf`` for a lone leaf)."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray  # global node index, or ~(global leaf index)
    right: np.ndarray
    default_left: np.ndarray
    missing: np.ndarray
    roots: np.ndarray
    leaves: np.ndarray

    @classmethod
    def parse(cls, trees: Sequence[dict], n_features: int) -> TreeEnsemble:
        """Check and join trees in the ranker file's form; ``ValueError`` (or Key/Type/IndexError) if malformed."""
        feature, threshold, left, right, default_left, missing, roots, leaves = [], [], [], [], [], [], [], []
        for tree in trees:
            base_node, base_leaf = len(feature), len(leaves)
            n_nodes = len(tree["feature"])
            for key in _NODE_KEYS:
                if len(tree[key]) != n_nodes:
                    raise ValueError(f"tree arrays of unequal length ({key})")
            n_leaves = len(tree["leaves"])

            def child(c: int) -> int:
                if c >= 0:
                    if c >= n_nodes:
                        raise ValueError("a child points past its tree")
                    return base_node + c
                if ~c >= n_leaves:
                    raise ValueError("a leaf index points past its tree")
                return ~(base_leaf + ~c)

            feature += [int(f) for f in tree["feature"]]
            threshold += [float(t) for t in tree["threshold"]]
            left += [child(int(c)) for c in tree["left"]]
            right += [child(int(c)) for c in tree["right"]]
            default_left += [bool(d) for d in tree["default_left"]]
            missing += [int(m) for m in tree["missing"]]
            roots.append(base_node if n_nodes else ~base_leaf)
            leaves += [float(v) for v in tree["leaves"]]
        if feature and (min(feature) < 0 or max(feature) >= n_features):
            raise ValueError("a split names an unknown feature")
        if not all(math.isfinite(v) for v in leaves + threshold):
            raise ValueError("non-finite numbers")
        return cls(
            feature=np.array(feature, dtype=np.int64),
            threshold=np.array(threshold, dtype=np.float64),
            left=np.array(left, dtype=np.int64),
            right=np.array(right, dtype=np.int64),
            default_left=np.array(default_left, dtype=bool),
            missing=np.array(missing, dtype=np.int64),
            roots=np.array(roots, dtype=np.int64),
            leaves=np.array(leaves, dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.roots)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The sum of the trees' leaf values for each row of ``X`` (LightGBM's raw score)."""
        X = np.asarray(X, dtype=np.float64)
        n = X.shape[0]
        if n == 0 or not len(self.roots):
            return np.zeros(n, dtype=np.float32)
        cur = np.repeat(self.roots[:, None], n, axis=1)  # (trees, rows): node index, or ~leaf when done
        rows = np.broadcast_to(np.arange(n), cur.shape)
        active = cur >= 0
        while active.any():
            node = cur[active]
            x = X[rows[active], self.feature[node]]
            missing = self.missing[node]
            nan = np.isnan(x)
            x = np.where(nan & (missing != 2), 0.0, x)  # NaN is zero unless the split learned a NaN branch
            is_missing = ((missing == 2) & nan) | ((missing == 1) & (np.abs(x) <= 1e-35))
            go_left = np.where(is_missing, self.default_left[node], x <= self.threshold[node])
            cur[active] = np.where(go_left, self.left[node], self.right[node])
            active = cur >= 0
        return self.leaves[~cur].sum(axis=0).astype(np.float32)
