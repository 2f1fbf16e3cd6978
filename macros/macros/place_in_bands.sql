{#- Adds `percentile` to every row of `relation` (which has fit_id and a valid score): the
    score placed on its fit's percentile bands (see the generated score_bands model). Each band
    is one percentile wide, so the percentile is the band plus the linear position inside it;
    the floor band is 0 and the top band (no upper bound) its own number. A fit without bands
    gets NULL, which the winners' not-null test reports: there is no silent default.
    The same arithmetic is `mlsm_py.train.summary.place` in Python. -#}
{% macro place_in_bands(relation, bands) -%}
    {{ return(adapter.dispatch('place_in_bands', 'mlsm')(relation, bands)) }}
{%- endmacro %}

{% macro _percentile_of(row, band) -%}
        case
            when {{ band }}.band is null then null
            when {{ band }}.band = -1 then cast(0 as {{ mlsm.type_double() }})
            when {{ band }}.upper is null then cast({{ band }}.band as {{ mlsm.type_double() }})
            else {{ band }}.band + ({{ row }}.score - {{ band }}.lower) / ({{ band }}.upper - {{ band }}.lower)
        end as percentile
{%- endmacro %}

{#- DuckDB: an ASOF join finds each score's band (the greatest lower bound <= score) by a
    merge, where a range join would compare every score with every band of its fit. -#}
{% macro duckdb__place_in_bands(relation, bands) -%}
    select
        placed_row.*,
{{ mlsm._percentile_of('placed_row', 'placed_band') }}
    from {{ relation }} as placed_row
    asof left join {{ bands }} as placed_band
        on placed_row.fit_id = placed_band.fit_id
        and placed_row.score >= placed_band.lower
{%- endmacro %}

{% macro default__place_in_bands(relation, bands) -%}
    select
        placed_row.*,
{{ mlsm._percentile_of('placed_row', 'placed_band') }}
    from {{ relation }} as placed_row
    left join {{ bands }} as placed_band
        on placed_row.fit_id = placed_band.fit_id
        and placed_row.score >= placed_band.lower
        and (placed_band.upper is null or placed_row.score < placed_band.upper)
{%- endmacro %}
