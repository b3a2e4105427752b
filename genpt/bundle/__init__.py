"""The model bundle: its layout, manifest, stores, publishing and reading, in one place.

A bundle is a directory whose manifest.json lists the sha256 and size of every other file.
`genpt export` writes one (artifacts/export/); `genpt publish` ships it, with metrics, plots,
the model card and lineage, as models/NAME/VERSION/ of a local or S3 registry:

    models/NAME/VERSION/
      onnx/                   the export bundle (EXPORT_DIR), one directory per model:
        lm/                   Hugging Face ONNX layout (transformers.js, optimum):
          config.json  generation_config.json  tokenizer.json  tokenizer_config.json ...
          onnx/model.onnx  onnx/model_fp16.onnx  onnx/model_quantized.onnx
          export.json
        NAME/                 a task model: the same onnx/ files, tokenizer.json (with its
                              input template), task.json (how to build inputs), export.json
        manifest.json
      tokenizer/ metrics/ plots/ params.yaml README.md
      manifest.json           every file above; format_version, lineage
    models/NAME/latest        {"version": VERSION}

manifest.py checks files, stores.py moves bytes (local dir or S3, one client factory in
genpt/stack/storage.py), registry.py publishes, fetches, resolves `latest` and opens bundles,
layout.py finds a model inside one, inventory.py lists a registry's versions and the objects
no complete version owns (`genpt registry list` / `gc`).
"""

from genpt.bundle import registry
from genpt.bundle.layout import EXPORT_DIR, BundleError, model_dir, models
from genpt.bundle.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    IntegrityError,
    build_manifest,
    sha256_file,
    verify_dir,
    write_manifest,
)
from genpt.bundle.registry import LATEST, fetch, open_bundle, publish, resolve
from genpt.bundle.stores import RegistryError, open_store, registry_store

__all__ = [
    "EXPORT_DIR",
    "FORMAT_VERSION",
    "LATEST",
    "MANIFEST",
    "BundleError",
    "IntegrityError",
    "RegistryError",
    "build_manifest",
    "fetch",
    "model_dir",
    "models",
    "open_bundle",
    "open_store",
    "registry",
    "publish",
    "registry_store",
    "resolve",
    "sha256_file",
    "verify_dir",
    "write_manifest",
]
