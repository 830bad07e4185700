"""bnstudy's sweeper for Hydra: a grid over named arms, in a selection and a measuring phase
(bnstudy_sweeper.py). Hydra finds it here, in the hydra_plugins namespace package."""
