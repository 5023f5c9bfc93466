"""datagen: a checkpointed, resumable generator of labelled trajectory-video datasets.

Entry point: ``datagen`` (datagen.cli). Format: docs/dataset-format.md.
"""
