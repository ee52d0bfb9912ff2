"""Pure rules over plain values: no Kafka, no I/O, no clocks (time is always passed in)."""
