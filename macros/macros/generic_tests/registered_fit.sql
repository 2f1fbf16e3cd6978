{#- Provenance: fails when the scores in `model` come from a fit that is not the registered
    `role` (champion / challenger) of `model_name` in this warehouse's registry. A retrain
    that is building its candidates passes `mlsm_run_id`; then the run's pending aliases count
    instead of the current ones, and they take effect only if the run publishes. -#}
{% test registered_fit(model, model_name, role, fit_id) %}
    {{ return(adapter.dispatch('test_registered_fit', 'mlsm')(model, model_name, role, fit_id)) }}
{% endtest %}

{% macro default__test_registered_fit(model, model_name, role, fit_id) %}
{%- set run_id = var('mlsm_run_id', none) -%}
with

scored as (

    select distinct fit_id from {{ model }}
    union
    select '{{ fit_id }}' as fit_id

),

pending as (

    select fit_id from {{ source('mlsm_registry', 'pending') }}
    where run_id = '{{ run_id or "" }}'
        and model_name = '{{ model_name }}'
        and alias = '{{ role }}'

),

current_alias as (

    select fit_id from {{ source('mlsm_registry', 'aliases') }}
    where model_name = '{{ model_name }}'
        and alias = '{{ role }}'
        and not exists (
            select 1 from {{ source('mlsm_registry', 'pending') }}
            where run_id = '{{ run_id or "" }}'
                and model_name = '{{ model_name }}'
                and alias = '{{ role }}'
        )

),

registered as (

    select fit_id from pending
    union all
    select fit_id from current_alias

)

select fit_id as unregistered_fit_id
from scored
where fit_id not in (select fit_id from registered where fit_id is not null)
{% endmacro %}
