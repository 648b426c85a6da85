"""Metamodels that read a black box's query outputs and predict its attributes (paper §4-5)."""
