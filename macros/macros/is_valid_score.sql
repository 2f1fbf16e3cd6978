{#- True for a usable score: not NULL and not NaN. NaN = NaN holds on DuckDB, PostgreSQL and
    Spark, so `<> NaN` excludes exactly the NaNs. -#}
{% macro is_valid_score(column) -%}
    {{ return(adapter.dispatch('is_valid_score', 'mlsm')(column)) }}
{%- endmacro %}

{% macro default__is_valid_score(column) -%}
    ({{ column }} is not null and {{ column }} <> cast('NaN' as {{ mlsm.type_double() }}))
{%- endmacro %}
