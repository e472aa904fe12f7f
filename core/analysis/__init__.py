"""Layer 6, analysis: the paper's analyses on a workspace and its SAEs.

`datasets` (labelled feature sets, train/test split), `identification` (logistic regression ->
top latent -> precision/recall), `grid` (the latent x K precision/recall tables), `splitting`,
`steering` (Eqs. 1-3), `suggestions`, `continuous` (latents against continuous attributes: Spearman
and the binning test), `universality` (the latents of two SAEs matched by activation
correlation), `analyze` (the default set), `report` (HTML), and `models` (how analyses reach SAEs).

May import: core.sae, core.workspace, core.constants, core.errors, core.atomic, core.filehash. Never
core.training (models are found through core.sae.catalog), core.labels or core.dashboard.
"""
