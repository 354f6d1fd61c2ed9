"""`load()` an artifact (file, conversion folder, or the packaged default) into a Classifier."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeleuk.classes import KNOWN_DATASET, ClassMap
from edgeleuk.errors import UserError
from edgeleuk.manifest import (
    MANIFEST_NAME,
    Manifest,
    PreprocessSpec,
    QualityLimits,
    Variant,
    manifest_from_dict,
    read_manifest,
    verify_variant,
)
from edgeleuk.ood import SCORE_OUTPUT, OODScorer, score_output_name
from edgeleuk.preprocess import preprocess
from edgeleuk.runtime.backends import open_backend, output_roles
from edgeleuk.runtime.embedded import read_embedded
from edgeleuk.runtime.quality import stain_strength

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
PREFERENCE = ("tflite-int8", "onnx-int8", "tflite-fp32", "onnx-fp32", "tflite-fp16", "tflite-dynamic")


@dataclass
class Classifier:
    """A loaded model: `predict` takes model-ready RGB uint8 images, `classify` raw frames, `infer`
    gives the head features too and `judge` scores them against the training data."""

    backend: object
    labels: tuple[str, ...]
    spec: PreprocessSpec
    path: Path
    variant: Variant | None = None
    ood: OODScorer | None = None
    cell_diameter_px: float | None = None  # the training images' red cells, in model pixels
    quality: QualityLimits | None = None  # the gate's limits calibrated for this model (None: the defaults)

    def __post_init__(self) -> None:
        self._check_input()
        expected = self.ood.stats.dims if self.ood is not None else None
        names = list(self.backend.output_names)
        # the file's own score layers (export/score_layers.py)
        scores = [i for i, n in enumerate(names) if n.startswith(SCORE_OUTPUT)]
        sizes = [-1 if i in scores else n for i, n in enumerate(self.backend.output_sizes)]
        self.probs_index, features = output_roles(sizes, len(self.labels), expected, self.path)
        self.features_indices = [i for i in features if i not in scores]
        wanted = score_output_name(self.ood.stats) if self.ood is not None else None
        self.score_index = names.index(wanted) if wanted in names else None
        if scores and self.score_index is None and self.ood is not None:
            print(f"note: {self.path.name}'s score layers were built from other statistics than its manifest's; "
                  "scoring with numpy from its features", file=sys.stderr)
        self.output_quantization = self.backend.output_quantizations[self.probs_index]
        self.output_dtype = self.backend.output_dtypes[self.probs_index]
        stain = self.ood.stats.stain if self.ood is not None else None
        if stain is not None and len(stain.log_limit) != len(self.labels):  # checked at load, not at the first frame
            raise UserError(
                f"{self.path}: the manifest's ood.stain has {len(stain.log_limit)} limits for {len(self.labels)} labels"
            )

    def _check_input(self) -> None:
        """The file's input against the preprocessing it will be fed: one clear error at load, not at the first
        frame."""
        shape, dtype = tuple(self.backend.input_shape), self.backend.input_dtype
        size = self.spec.size
        if len(shape) != 4 or shape[3] not in (3, -1) or any(d not in (size, -1) for d in shape[1:3]):
            raise UserError(
                f"{self.path}: input of shape {list(shape)}; the preprocessing gives [batch, {size}, {size}, 3] "
                f"RGB images (the manifest or the file's own information says size {size})"
            )
        if dtype not in ("uint8", "int8", "float32"):
            raise UserError(f"{self.path}: input of type {dtype}; expected uint8, int8 or float32")
        for i, (out_dtype, q) in enumerate(zip(self.backend.output_dtypes, self.backend.output_quantizations)):
            if out_dtype not in ("float32", "uint8", "int8") or (out_dtype != "float32" and q is None):
                raise UserError(
                    f"{self.path}: output {i} of type {out_dtype} without quantization; expected float32 or "
                    "quantized uint8/int8"
                )

    @property
    def name(self) -> str:
        return self.variant.name if self.variant else self.path.name

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Model-ready uint8 RGB (N, H, W, 3) → the input tensor in the file's dtype/quantization."""
        dtype = self.backend.input_dtype
        q = self.backend.input_quantization
        if q is not None and (q.scale != 1.0 or q.zero_point != 0):
            info = np.iinfo(dtype)
            return np.clip(np.round(images / q.scale + q.zero_point), info.min, info.max).astype(dtype)
        return images.astype(dtype, copy=False)

    def _run(self, images: np.ndarray, outputs: tuple[int, ...]) -> list[np.ndarray]:
        """The outputs at `outputs` as float32, dequantized."""
        if images.ndim == 3:
            images = images[None]
        expected = (self.spec.size, self.spec.size, 3)
        if images.shape[1:] != expected:
            raise UserError(f"input of shape {images.shape[1:]}; the model expects {expected} (use preprocess())")
        values = []
        for i, raw in zip(outputs, self.backend.invoke(self.prepare(images), outputs)):
            q = self.backend.output_quantizations[i]
            values.append(q.dequantize(raw) if q is not None else raw.astype(np.float32, copy=False))
        return values

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(N, H, W, 3) or (H, W, 3) uint8 RGB, already preprocessed → (N, classes) probabilities and
        the features the OOD score reads, one (N, dims) array each (none when the file has none)."""
        values = self._run(images, (self.probs_index, *self.features_indices))
        return values[0], values[1:]

    def infer_judged(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """As `infer`, but → probabilities and the features' out-of-distribution scores (None: cannot
        judge): the file's own score layers when they match the manifest, else numpy on the features.
        The run loop's one call per frame."""
        if self.ood is None:
            return self._run(images, (self.probs_index,))[0], None
        if self.score_index is None:
            probs, features = self.infer(images)
            return probs, self.ood.score(features)
        probs, scores = self._run(images, (self.probs_index, self.score_index))
        return probs, scores[:, 0]

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) or (H, W, 3) uint8 RGB, already preprocessed → (N, classes) probabilities
        (the only output read)."""
        return self._run(images, (self.probs_index,))[0]

    def judge(
        self, features: list[np.ndarray], images: np.ndarray | None = None, probs: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Out-of-distribution scores (above 1: out of distribution) of `infer`'s features, and with the
        images and probabilities, of their stain too (as the run loop judges); None: cannot judge."""
        if self.ood is None:
            return None
        scores = self.ood.score(features)
        if images is not None and probs is not None and self.ood.judges_stain:
            stain = [self.ood.stain_score(leukocytes, int(top), red)
                     for (leukocytes, red), top in zip(map(stain_strength, images), np.asarray(probs).argmax(1))]
            scores = np.maximum(scores, np.asarray(stain, dtype=scores.dtype))
        return scores

    def classify(self, frame: np.ndarray, color_order: str = "BGR", roi=None) -> np.ndarray:
        """A raw frame (any size, BGR from OpenCV by default) → probabilities for it."""
        return self.predict(preprocess(frame, self.spec, color_order=color_order, roi=roi))[0]


def packaged_models() -> list[str]:
    """The models that ship inside the package, by name (`run --model fast`)."""
    root = DEFAULT_MODEL_DIR.parent
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST_NAME).is_file())


def packaged_model(name: str) -> Path | None:
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    path = DEFAULT_MODEL_DIR.parent / name
    return path if (path / MANIFEST_NAME).is_file() else None


def _pick(manifest: Manifest, variant: str | None) -> Variant:
    if variant:
        return manifest.variant(variant)
    for name in PREFERENCE:
        for v in manifest.variants:
            if v.name == name:
                return v
    raise UserError("the manifest lists no TFLite or ONNX variant; run 'edgeleuk convert' first")


def _refuse_unchecked_kernels(variant: Variant | None) -> None:
    """An ONNX int8 file never run under this CPU's saturating kernels is refused, not run: it could
    give other answers here than the ones it was evaluated with (edgeleuk/cpu.py)."""
    from edgeleuk.cpu import SATURATING, covered, read_cpu, unchecked_warning

    if variant is None or variant.format != "onnx" or variant.precision != "int8":
        return
    family = read_cpu().int8_family
    if family in SATURATING and not covered(family, variant.kernels_checked):
        raise UserError(unchecked_warning(variant.file, family))


def load(model: str | Path | None = None, variant: str | None = None, backend: str | None = None,
         threads: int | None = None) -> Classifier:
    """Load a model for inference.

    Args:
        model: a .tflite/.onnx file, a conversion output folder, or None for the packaged default.
        variant: which manifest variant (default: int8 TFLite, then int8 ONNX, then float).
        backend: override the backend chosen from the file (litert, tflite-runtime, tf-lite, onnxruntime).
        threads: inference threads (default: all cores this process may use).
    """
    path = Path(model) if model is not None else DEFAULT_MODEL_DIR
    if model is not None and not path.exists() and packaged_model(str(model)) is not None:
        path = packaged_model(str(model))
    if not path.exists():
        names = ", ".join(packaged_models())
        raise UserError(f"model {path} does not exist (packaged models, by name: {names})")
    manifest, chosen = None, None
    if path.is_dir():
        manifest = read_manifest(path)
        chosen = _pick(manifest, variant)
        path = verify_variant(path, chosen)
    elif (path.parent / MANIFEST_NAME).is_file():
        listed = read_manifest(path.parent)
        matches = [v for v in listed.variants if v.file == path.name]
        if matches:
            manifest, chosen = listed, matches[0]
            verify_variant(path.parent, chosen)
    if path.suffix == ".keras":
        raise UserError(
            f"{path} is a Keras model; the device runtime runs .tflite/.onnx variants (run 'edgeleuk convert')"
        )
    _refuse_unchecked_kernels(chosen)
    engine = open_backend(path, threads, backend)
    if manifest is None:
        info = read_embedded(path, getattr(engine, "session", None))
        if info is None:
            print(
                f"warning: {path.name} carries no labels or preprocessing; "
                f"assuming {KNOWN_DATASET} and 224 centre crop",
                file=sys.stderr,
            )
            manifest = Manifest(labels=KNOWN_DATASET)
        else:
            try:
                manifest = manifest_from_dict(info)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                raise UserError(
                    f"{path}: its embedded information is malformed ({exc.__class__.__name__}: {exc})"
                ) from None
    return Classifier(backend=engine, labels=manifest.labels, spec=manifest.preprocess, path=path, variant=chosen,
                      ood=OODScorer(manifest.ood) if manifest.ood is not None else None,
                      cell_diameter_px=manifest.cell_diameter_px, quality=manifest.quality)


def classes_beside(model_file: "str | Path", labels: tuple[str, ...]) -> ClassMap:
    """The class map of the manifest beside a model file when it lists the file's labels; else the
    labels alone (each reads the folder of its own name)."""
    listed = Path(model_file).parent / MANIFEST_NAME
    if listed.is_file():
        classes = read_manifest(listed).classes()
        if classes.labels == tuple(labels):
            return classes
    return ClassMap(tuple(labels))


def predict_all(classifier: Classifier, images: np.ndarray, batch: int = 32) -> np.ndarray:
    return infer_all(classifier, images, batch)[0]


def infer_all(classifier: Classifier, images: np.ndarray, batch: int = 32) -> tuple[np.ndarray, list[np.ndarray]]:
    """Probabilities and the OOD features (one array per feature output) of many images, in batches."""
    out = [classifier.infer(images[i : i + batch]) for i in range(0, len(images), batch)]
    features = [np.concatenate([f[k] for _, f in out]) for k in range(len(out[0][1]))]
    return np.concatenate([p for p, _ in out]), features
