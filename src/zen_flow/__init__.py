"""zen-flow: a Kubernetes controller that runs JobFlows, DAGs of batch/v1 Jobs."""

__version__ = "0.1.0"
