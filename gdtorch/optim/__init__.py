"""Optimisers: gradient descent, ``θ ← θ − η ∇C(θ)``, written from scratch.

``GradientDescent`` (alias ``GD``) replaces ``torch.optim.SGD`` by changing one line;
``gradient_descent`` is its functional form.
"""

from gdtorch.optim.gradient_descent import GradientDescent, gradient_descent

GD = GradientDescent

__all__ = ["GD", "GradientDescent", "gradient_descent"]
