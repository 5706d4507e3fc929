"""Analytic and training-free estimators on frozen features (scikit-learn style).

Random-feature transformers (:mod:`.random_features`), exact incremental ridge
regression (:mod:`.ridge`), RanPAC, FeCAM, RAIL, random-feature LDA (KLDA /
RanDumb) and SLCA's classifier alignment step (:mod:`.alignment`).
"""
