"""Datasets with localization ground truth: the GroundTruth type, the cluttered Fashion-MNIST, wsolevaluation's
CUB, ILSVRC and OpenImages readers, and the training augmentations. Imports neither networks nor metrics."""
