{#- The newest `column_name` must be younger than `warn_hours` (else a warning) and
    `error_hours` (else an error). Returns one row per threshold passed, so the test's
    warn_if ">= 1" / error_if ">= 2" give the severity; the rows carry the age in hours. -#}
{% test freshness(model, column_name, warn_hours, error_hours) %}
    {{ return(adapter.dispatch('test_freshness', 'mlsm')(model, column_name, warn_hours, error_hours)) }}
{% endtest %}

{% macro default__test_freshness(model, column_name, warn_hours, error_hours) %}
with

newest as (

    select max({{ column_name }}) as newest from {{ model }}

),

aged as (

    select
        newest,
        {{ dbt.datediff('newest', 'cast(' ~ dbt.current_timestamp() ~ ' as timestamp)', 'hour') }} as age_hours
    from newest

),

thresholds as (

    select {{ warn_hours }} as hours, 'warn' as level
    union all
    select {{ error_hours }} as hours, 'error' as level

)

select aged.age_hours, thresholds.hours, thresholds.level, aged.newest
from aged
cross join thresholds
where aged.newest is null or aged.age_hours >= thresholds.hours
{% endmacro %}
