{#- A record's bucket for a traffic split: the first 8 hex digits of md5(text) as an integer,
    0 <= bucket < 2^32. md5 is the same on every engine (hash() is not: DuckDB's changed between
    releases), so a record keeps its arm across runs and engines; Python's
    mlsm_py.spec.Split.arm_of computes the same number. -#}
{% macro md5_bucket(text) -%}
    {{ return(adapter.dispatch('md5_bucket', 'mlsm')(text)) }}
{%- endmacro %}

{% macro default__md5_bucket(text) -%}
    cast(('0x' || substr(md5({{ text }}), 1, 8)) as ubigint)
{%- endmacro %}

{% macro postgres__md5_bucket(text) -%}
    ('x' || substr(md5({{ text }}), 1, 8))::bit(32)::bigint
{%- endmacro %}

{% macro spark__md5_bucket(text) -%}
    cast(conv(substr(md5({{ text }}), 1, 8), 16, 10) as bigint)
{%- endmacro %}
