"""Load a saved tf_keras model for `mcuformer convert`: the static ViT's layers and the user's
custom layers (`--custom-objects FILE.py`) known, an unknown custom layer named in one line."""
from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

from common.errors import UserError


def custom_objects_from(path) -> dict:
    """Import the user's Python file; its keras Layer classes (and a CUSTOM_OBJECTS dict if it has one)."""
    import tf_keras as keras

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--custom-objects {path} does not exist; pass the .py file that defines your layers")
    spec = importlib.util.spec_from_file_location(f"mcuformer_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code can fail in any way
        raise UserError(f"--custom-objects {path} failed to import: {type(exc).__name__}: {exc}") from None
    found = {name: obj for name, obj in vars(module).items()
             if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer) and obj.__module__ == module.__name__}
    found.update(getattr(module, "CUSTOM_OBJECTS", {}) or {})
    return found


def load_model(path, custom_objects_file=None):
    """The saved tf_keras model at `path` (static ViT layers and the user's custom layers known)."""
    import tf_keras as keras

    from keras_supernet.static_vit import CUSTOM_OBJECTS

    objects = dict(CUSTOM_OBJECTS)
    if custom_objects_file:
        objects.update(custom_objects_from(custom_objects_file))
    unknown = _unknown_layer(path, objects)
    if unknown:
        raise UserError(f"cannot load {path}: layer {unknown[0]!r} ({unknown[1]}) is a custom layer; pass "
                        f"--custom-objects FILE.py, the Python file that defines it")
    try:
        return keras.models.load_model(path, custom_objects=objects, compile=False)
    except Exception as exc:  # tf_keras raises assorted types for unknown layers and bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load {path} as a tf_keras model: {first[:300]}") from None


def _unknown_layer(path, objects) -> tuple | None:
    """(name, class) of the first layer of a .keras file that neither tf_keras nor `objects` knows
    (tf_keras fails on it later with an unrelated message)."""
    import json
    import zipfile

    import tf_keras as keras

    if Path(path).suffix != ".keras":
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        return None                          # the loader reports a bad file itself
    known = {"TFOpLambda", "SlicingOpLambda", "Functional", "Sequential", "InputLayer"}
    for layer in config.get("config", {}).get("layers", []):
        kind = layer.get("class_name", "")
        if kind in objects or kind in known or hasattr(keras.layers, kind) \
                or keras.saving.get_registered_object(layer.get("registered_name") or kind) is not None:
            continue
        return layer.get("config", {}).get("name", "?"), kind
    return None


def is_static_vit(model) -> bool:
    """keras_supernet's static ViT: its custom layers, after stem Conv2D layers if any."""
    from keras_supernet.static_vit import CUSTOM_OBJECTS

    kinds = [type(l).__name__ for l in model.layers]
    return "PatchEmbed" in kinds and all(k in ("InputLayer", "Conv2D", *CUSTOM_OBJECTS) for k in kinds)
