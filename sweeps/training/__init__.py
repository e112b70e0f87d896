"""The harness, running one training: the config, the data, train(cfg)."""
