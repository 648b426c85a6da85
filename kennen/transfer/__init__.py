"""Black boxes the zoo never saw (issue 15): do the metamodels transfer beyond their own trainer?

Every zoo model, training and test box alike, comes from one trainer (``kennen.zoo``):
one network builder, one permutation of the training images, one batch-order and
dropout protocol. A metamodel may learn that trainer's fingerprints as well as
the attributes. Here a second, separately written trainer makes *foreign* boxes:

- :mod:`kennen.transfer.foreign`: its own network template, data loader,
  permutation of the training images and seeds, in the style of the official
  ``mnist.py`` loop; boxes are saved as ``torch.export`` programs.
- :mod:`kennen.transfer.boxes`: the ``transfer`` params, balanced samples of
  Table 1 for each training regime, the boxes' table.
- :mod:`kennen.transfer.score`: each box whitened through ``kennen whiten``'s
  own code path, scored against its true attributes.
"""
