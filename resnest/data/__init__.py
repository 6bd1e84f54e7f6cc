"""Data: the ImageNet-layout `mindspore.dataset` pipeline and a synthetic data set generator."""
