"""pushstream: a Kafka-native push-notification pipeline on Faust."""

__version__ = "0.1.0"
