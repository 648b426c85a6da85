"""kennen: reverse-engineering black-box neural networks (Oh et al., ICLR 2018).

The library holds all logic; ``stages/`` wraps it into one thin script per DVC stage.
"""

__version__ = "0.1.0"
