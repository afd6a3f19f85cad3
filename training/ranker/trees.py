"""From LightGBM to the ranker file: the trees of a trained booster as the JSON arrays ``qa.answer.trees`` reads.

Training side only: the product evaluates these arrays with numpy and never imports LightGBM or this module.
"""

from __future__ import annotations


def trees_from_lightgbm(dump: dict) -> list[dict]:
    """The trees of a LightGBM ``Booster.dump_model()`` in the ranker file's JSON form (``qa.answer.trees``)."""
    missing_codes = {"None": 0, "Zero": 1, "NaN": 2}
    out = []
    for info in dump["tree_info"]:
        root = info["tree_structure"]
        nodes: dict[int, dict] = {}
        leaves: dict[int, float] = {}

        def ref(node: dict) -> int:
            if "split_index" in node:
                if node.get("decision_type", "<=") != "<=":
                    raise ValueError("categorical splits are not supported")
                nodes[node["split_index"]] = node
                ref(node["left_child"]), ref(node["right_child"])
                return int(node["split_index"])
            index = int(node.get("leaf_index", 0))
            leaves[index] = float(node["leaf_value"])
            return ~index

        ref(root)
        order = sorted(nodes)
        if order != list(range(len(order))) or sorted(leaves) != list(range(len(leaves))):
            raise ValueError("unexpected node numbering in the LightGBM dump")
        child = lambda node: int(node["split_index"]) if "split_index" in node else ~int(node.get("leaf_index", 0))
        out.append({
            "feature": [int(nodes[i]["split_feature"]) for i in order],
            "threshold": [float(nodes[i]["threshold"]) for i in order],
            "left": [child(nodes[i]["left_child"]) for i in order],
            "right": [child(nodes[i]["right_child"]) for i in order],
            "default_left": [bool(nodes[i]["default_left"]) for i in order],
            "missing": [missing_codes[nodes[i].get("missing_type", "None")] for i in order],
            "leaves": [leaves[i] for i in range(len(leaves))],
        })
    return out
