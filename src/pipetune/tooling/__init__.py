"""Tooling around the live runtime, outside it: the live demo (`pipetune demo`) and the serving benchmark
(`pipetune bench serving`). The runtime package (`serving/`) never imports from here."""
