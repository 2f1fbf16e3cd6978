{#- Fails on NaN, +inf and -inf. NULLs are left to not_null. NaN = NaN holds on DuckDB,
    PostgreSQL and Spark, so the comparison finds NaN too. -#}
{% test finite(model, column_name) %}
    {{ return(adapter.dispatch('test_finite', 'mlsm')(model, column_name)) }}
{% endtest %}

{% macro default__test_finite(model, column_name) %}
select {{ column_name }} as value
from {{ model }}
where {{ column_name }} in (
    cast('NaN' as {{ mlsm.type_double() }}),
    cast('Infinity' as {{ mlsm.type_double() }}),
    cast('-Infinity' as {{ mlsm.type_double() }})
)
{% endmacro %}
