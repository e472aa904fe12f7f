"""The Continuous page's data: a model's stored (or, the first time, computed: milliseconds)
`continuous` result for one attribute (core.analysis.continuous), its figure's points, and the
top-latents table with a link to each latent's page.

    attribute_choices(ws)                       -> the workspace's continuous attributes
    page_data(ws, model, attribute)             -> ContinuousPage(result, chart, table)

InputError (an attribute constant or too sparse on the analysed rows) reaches the page, which
shows its message.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from core.analysis.continuous import SHOWN_COLUMNS
from core.dashboard.universality_view import latent_link

TABLE_COLUMNS = [*SHOWN_COLUMNS, "binning", "link"]


class ContinuousPage(NamedTuple):
    result: object
    """core.analysis.continuous.ContinuousResult"""
    chart: object
    """Altair chart: activation against the attribute, the latents' ranges as ordered bands."""
    table: pd.DataFrame
    """TABLE_COLUMNS of the figure's latents (the binning ones first); link: the latent's page."""


def attribute_choices(ws) -> list[str]:
    """The continuous attributes (numeric metadata columns) of `ws`, measured ones first."""
    from core.constants import MEASURED_ATTRIBUTES

    cont = ws.continuous_attributes()
    return [a for a in MEASURED_ATTRIBUTES if a in cont] + [a for a in cont if a not in MEASURED_ATTRIBUTES]


def latent_table(ws, res, n: int) -> pd.DataFrame:
    top = res.top(n).copy()
    top["binning"] = top["latent"].isin(res.binning_latents)
    top["link"] = [latent_link(ws.name, res.model, int(j)) for j in top["latent"]]
    return top[TABLE_COLUMNS].reset_index(drop=True)


def page_data(ws, model: str, attribute: str) -> ContinuousPage:
    from core.analysis.continuous import CHART_LATENTS, activation_points, continuous, continuous_chart

    res = continuous(ws, model, attribute)
    chart = continuous_chart(res, activation_points(ws, res))
    return ContinuousPage(res, chart, latent_table(ws, res, CHART_LATENTS))
