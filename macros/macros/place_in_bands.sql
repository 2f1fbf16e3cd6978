{#- Adds `percentile` (0..100) and `decile` (1..10, 10 = the top tenth) to every row of
    `relation` (which has fit_id and score): the score placed on its fit's percentile bands,
    stored at training (see the generated score_bands model), so a record's band never depends
    on which other records are in the batch. Each band is one percentile wide, so the
    percentile is the band plus the linear position inside it; the floor band is 0 and the top
    band (no upper bound) its own number. A NULL or NaN score gets NULL bands; so does a fit
    without bands, which the not-null tests report: there is no silent default.
    The same arithmetic is `mlsm_py.train.summary.place` in Python. -#}
{% macro place_in_bands(relation, bands) -%}
    {{ return(adapter.dispatch('place_in_bands', 'mlsm')(relation, bands)) }}
{%- endmacro %}

{% macro _percentile_of(row, band) -%}
        case
            when not {{ mlsm.is_valid_score(row ~ '.score') }} then null
            when {{ band }}.band is null then null
            when {{ band }}.band = -1 then cast(0 as {{ mlsm.type_double() }})
            when {{ band }}.upper is null then cast({{ band }}.band as {{ mlsm.type_double() }})
            else {{ band }}.band + ({{ row }}.score - {{ band }}.lower) / ({{ band }}.upper - {{ band }}.lower)
        end
{%- endmacro %}

{#- 1..10 from a percentile: [0, 10) is 1, ..., [90, 100] is 10. -#}
{% macro _decile_of(percentile) -%}
        case
            when {{ percentile }} is null then null
            when {{ percentile }} >= 90 then 10
            else cast(floor({{ percentile }} / 10) as integer) + 1
        end
{%- endmacro %}

{% macro _placed(row, band) -%}
{{ mlsm._percentile_of(row, band) }} as percentile,
{{ mlsm._decile_of(mlsm._percentile_of(row, band)) }} as decile
{%- endmacro %}

{#- DuckDB: an ASOF join finds each score's band (the greatest lower bound <= score) by a
    merge, where a range join would compare every score with every band of its fit. -#}
{% macro duckdb__place_in_bands(relation, bands) -%}
    select
        placed_row.*,
{{ mlsm._placed('placed_row', 'placed_band') }}
    from {{ relation }} as placed_row
    asof left join {{ bands }} as placed_band
        on placed_row.fit_id = placed_band.fit_id
        and placed_row.score >= placed_band.lower
{%- endmacro %}

{% macro default__place_in_bands(relation, bands) -%}
    select
        placed_row.*,
{{ mlsm._placed('placed_row', 'placed_band') }}
    from {{ relation }} as placed_row
    left join {{ bands }} as placed_band
        on placed_row.fit_id = placed_band.fit_id
        and placed_row.score >= placed_band.lower
        and (placed_band.upper is null or placed_row.score < placed_band.upper)
{%- endmacro %}
