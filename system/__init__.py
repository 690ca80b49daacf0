"""The assembled system, shared by training (lightning_modules/) and generation (inference/) so neither
imports the other: build.py turns a config into (data source, codec, condition encoder, DiT), sampling.py
is the one sampling sequence, weights.py reads and writes exported weights."""
