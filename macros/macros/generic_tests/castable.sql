{#- Fails on values that are present but cannot be read as `type` (text in a number column):
    the contract failure names the column and the value, instead of the cast error a model
    downstream would raise. Declared on sources, whose tests run before the models reading
    them, so a failure skips staging rather than breaking it. try_cast: DuckDB and Spark
    (PostgreSQL has none; its override comes with the PostgreSQL project, issue 13). -#}
{% test castable(model, column_name, type) %}
    {{ return(adapter.dispatch('test_castable', 'mlsm')(model, column_name, type)) }}
{% endtest %}

{% macro default__test_castable(model, column_name, type) %}
select {{ column_name }} as value
from {{ model }}
where {{ column_name }} is not null
    and try_cast({{ column_name }} as {{ type }}) is null
{% endmacro %}

