"""Radiometry: which raster bands feed the model, and how their values reach the training domain.

``scaling.plan_radiometry`` chooses a run's ``plan.Radiometry`` once, from a sample of the
whole raster (``sample``): the bands (``bands``), the scaling (``scaling``), for Sentinel-2
reflectance the product level and the offset (``product``), and a caution when guessed bands'
colour balance is unlike the training images' (``colour``).
"""
