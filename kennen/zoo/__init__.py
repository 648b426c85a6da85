"""The MNIST-NETS model zoo: configurations, network template, training, storage."""
