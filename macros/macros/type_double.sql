{#- A 64-bit float. dbt.type_float() is a 32-bit FLOAT on DuckDB and Spark rejects
    `double precision`, so each adapter names its own. -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'mlsm')()) }}
{%- endmacro %}

{% macro default__type_double() -%}double precision{%- endmacro %}

{% macro duckdb__type_double() -%}double{%- endmacro %}

{% macro spark__type_double() -%}double{%- endmacro %}
