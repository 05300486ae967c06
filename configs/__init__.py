"""Named configurations, installed with the package: ``load_config("paper")`` finds
``paper.yaml`` here. Each file overrides the defaults of :class:`reid.config.Config`."""
