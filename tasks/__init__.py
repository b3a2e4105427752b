"""The pipeline's stages, one module per dvc.yaml stage (`genpt STAGE` runs `run`)."""
