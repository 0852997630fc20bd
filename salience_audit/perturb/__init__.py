"""Image perturbations the measures apply: salt-and-pepper noise, geometric variants, Gaussian and salience-guided blur."""
