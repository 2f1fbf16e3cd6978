{#- Fails on values that are present but cannot be read as `type` (text in a number column):
    the contract failure names the column and the value, instead of the cast error a model
    downstream would raise. Declared on sources, whose tests run before the models reading
    them, so a failure skips staging rather than breaking it. try_cast: DuckDB and Spark.
    PostgreSQL 15 has neither try_cast nor pg_input_is_valid (16+): its override matches the
    text form against the literal grammar of the type (a value out of the type's range still
    fails in staging, with PostgreSQL's own message). -#}
{% test castable(model, column_name, type) %}
    {{ return(adapter.dispatch('test_castable', 'mlsm')(model, column_name, type)) }}
{% endtest %}

{% macro default__test_castable(model, column_name, type) %}
select {{ column_name }} as value
from {{ model }}
where {{ column_name }} is not null
    and try_cast({{ column_name }} as {{ type }}) is null
{% endmacro %}


{% macro postgres__test_castable(model, column_name, type) %}
{%- set t = type | lower -%}
{%- if t in ('integer', 'int', 'bigint', 'smallint') -%}
    {%- set pattern = '^\\s*[-+]?[0-9]+\\s*$' -%}
{%- elif t in ('double', 'double precision', 'float', 'real', 'numeric') -%}
    {%- set pattern = '^\\s*([-+]?(([0-9]+([.][0-9]*)?|[.][0-9]+)(e[-+]?[0-9]+)?|infinity|inf)|nan)\\s*$' -%}
{%- elif t in ('timestamp', 'timestamptz', 'date') -%}
    {%- set pattern = '^\\s*[0-9]{4}-[0-9]{2}-[0-9]{2}([ t][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?([-+][0-9]{2}(:?[0-9]{2})?|z)?)?\\s*$' -%}
{%- else -%}
    {{ exceptions.raise_compiler_error("castable on postgres: no rule for type " ~ type) }}
{%- endif %}
select {{ column_name }} as value
from {{ model }}
where {{ column_name }} is not null
    and not (cast({{ column_name }} as text) ~* '{{ pattern }}')
{% endmacro %}
