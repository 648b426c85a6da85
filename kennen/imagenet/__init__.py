"""The ImageNet model-family probe (paper §7): which family does a classifier belong to?"""
