"""Networks beyond model.py's own: torchvision's GAP classifiers cut into (features, fc)."""
