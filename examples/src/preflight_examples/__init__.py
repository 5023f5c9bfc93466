"""The example workloads preflight is developed against: datagen, trainer, serving, telemetry."""
