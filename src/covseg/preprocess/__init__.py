"""What every network is fed: the intensity contract (`contract`) and in-plane resampling
(`resample`), shared by the lung model, the lesion model, training and export.

Kept apart from `infer` so that the lungs, the data sets and training use it without reaching
up into the lesion pipeline. Importing this package loads nothing heavy; its modules do.
"""
