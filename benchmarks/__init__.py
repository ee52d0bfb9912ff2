"""Benchmarks that run the real pipeline (local Kafka, faust workers, fake providers). See docs/benchmarks.md."""
