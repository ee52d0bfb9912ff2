"""Faust agents: thin glue that reads a batch, calls the rules, writes the results."""
