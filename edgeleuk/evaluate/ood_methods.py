"""Which in-distribution score to ship: seven candidates on the same data, the Keras (float) model.

Each score is fitted on the training part and thresholded to flag `target` of the validation views
(8 turns and flips of each image), then applied to the test part and to every out-of-distribution
set. The table gives the flagged shares and the AUROC of test against all sets together. Host only
(Keras, scikit-learn); the device computes just the shipped one (edgeleuk.ood).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from edgeleuk.ood import OODScorer, Parts, fit_ood
from edgeleuk.ood_stats import TARGET_FLAGGED
from edgeleuk.preprocess import dihedral


def _outputs(net, images: np.ndarray) -> dict[str, np.ndarray]:
    """Probabilities, head and field features and logits of `with_features(model)`."""
    probs, features, field = net.predict(images, batch_size=64, verbose=0)
    kernel, bias = (np.asarray(w) for w in net.get_layer("dense_1").get_weights())
    return {"probs": probs, "features": features, "field": field, "logits": features @ kernel + bias}


def candidates(train: dict[str, np.ndarray], train_labels: np.ndarray, classes: int, val: dict[str, np.ndarray],
               target: float) -> dict[str, Callable[[dict], np.ndarray]]:
    """name → score function (larger: farther from the training data)."""
    from scipy.special import logsumexp
    from sklearn.mixture import GaussianMixture

    # each score gets its own threshold below; fit_ood's matters only for two spaces
    def fit(*spaces: str) -> OODScorer:
        return OODScorer(
            fit_ood(
                Parts([train[s] for s in spaces], train_labels, [val[s] for s in spaces], classes), list(spaces), target
            )
        )

    head, field, both = fit("features"), fit("field"), fit("features", "field")
    bank = train["features"] / (np.linalg.norm(train["features"], axis=1, keepdims=True) + 1e-9)
    gmm = GaussianMixture(8, covariance_type="diag", reg_covar=1e-3, random_state=0).fit(train["features"])

    def knn(out: dict, k: int = 10) -> np.ndarray:
        x = out["features"] / (np.linalg.norm(out["features"], axis=1, keepdims=True) + 1e-9)
        return np.sort(1.0 - x @ bank.T, axis=1)[:, k - 1]

    return {
        "max softmax": lambda out: -out["probs"].max(1),
        "energy": lambda out: -logsumexp(out["logits"], axis=1),
        "Mahalanobis, head features": lambda out: head.score([out["features"]]),
        "Mahalanobis, field features (block 12)": lambda out: field.score([out["field"]]),
        "Mahalanobis, head or field (shipped)": lambda out: both.score([out["features"], out["field"]]),
        "k-NN cosine distance (k=10)": knn,
        "Gaussian mixture (8, diagonal)": lambda out: -gmm.score_samples(out["features"]),
    }


def compare_methods(model, parts: Parts, test: np.ndarray, ood_sets: dict[str, np.ndarray],
                    target: float = TARGET_FLAGGED) -> dict[str, Any]:
    """Each candidate score fitted on `parts` (images), thresholded on the validation views, and how
    much of the test part and of each OOD set it flags."""
    train, train_labels, val, classes = parts.train, parts.train_labels, parts.val, parts.classes
    from sklearn.metrics import roc_auc_score

    from edgeleuk.keras_graph import with_features

    net = with_features(model)  # built once: a new Keras model per call would retrace its predict function
    outs = {"val": _outputs(net, dihedral(val)), "test": _outputs(net, test)}
    outs.update({name: _outputs(net, images) for name, images in ood_sets.items()})
    rows = []
    for name, score in candidates(_outputs(net, train), train_labels, classes, outs["val"], target).items():
        scores = {part: score(out) for part, out in outs.items()}
        threshold = float(np.quantile(scores["val"], 1 - target))
        every_ood = np.concatenate([scores[s] for s in ood_sets])
        auroc = roc_auc_score(
            np.r_[np.zeros(len(scores["test"])), np.ones(len(every_ood))], np.r_[scores["test"], every_ood]
        )
        rows.append({"method": name, "val_flagged": float(np.mean(scores["val"] > threshold)),
                     "test_flagged": float(np.mean(scores["test"] > threshold)),
                     "sets": {s: float(np.mean(scores[s] > threshold)) for s in ood_sets}, "auroc": float(auroc)})
    return {"target_val_flagged": target, "rows": rows,
            "note": "score alone, before the quality gate and the magnification check; float Keras model"}


def format_methods(result: dict[str, Any]) -> str:
    sets = list(result["rows"][0]["sets"])
    head = "| method | val | test | " + " | ".join(sets) + " | AUROC |"
    lines = [head, "|" + "---|" * (len(sets) + 4)]
    for r in result["rows"]:
        lines.append(f"| {r['method']} | {r['val_flagged'] * 100:.1f} | {r['test_flagged'] * 100:.1f} | "
                     + " | ".join(f"{r['sets'][s] * 100:.1f}" for s in sets) + f" | {r['auroc']:.3f} |")
    return "\n".join(lines)
