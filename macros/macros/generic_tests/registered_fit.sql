{#- Provenance: fails when the scores in `model` come from a fit that is not the registered
    `role` (champion / challenger) of `model_name` in this warehouse's registry, or when the
    model's file is not the one mlsm last wrote from that registry (its sha256, as dbt keeps it
    in the node's checksum). A retrain building its candidates passes its run id (MLSM_RUN_ID); then the
    run's pending aliases count instead of the current ones, and they take effect only if the
    run publishes. -#}
{% test registered_fit(model, model_name, role, fit_id) %}
    {{ return(adapter.dispatch('test_registered_fit', 'mlsm')(model, model_name, role, fit_id)) }}
{% endtest %}

{% macro default__test_registered_fit(model, model_name, role, fit_id) %}
{%- set run_id = mlsm.run_id('') -%}
{%- set node = mlsm.node_of_relation(model) -%}
with

scored as (

    select distinct fit_id from {{ model }}
    union
    select '{{ fit_id }}' as fit_id

),

pending as (

    select fit_id, segment from {{ source('mlsm_registry', 'pending') }}
    where run_id = '{{ run_id or "" }}'
        and model_name = '{{ model_name }}'
        and alias = '{{ role }}'

),

current_alias as (

    {#- a segment the run changes counts with its pending fit, every other with its current -#}
    select fit_id from {{ source('mlsm_registry', 'aliases') }} as current_
    where model_name = '{{ model_name }}'
        and alias = '{{ role }}'
        and not exists (
            select 1 from pending where pending.segment is not distinct from current_.segment
        )

),

registered as (

    select fit_id from pending
    union all
    select fit_id from current_alias

),

unregistered as (

    select 'fit ' || fit_id || ' is not the registered {{ role }}' as problem
    from scored
    where fit_id not in (select fit_id from registered where fit_id is not null)

),

changed_file as (

    select 'file {{ node.original_file_path if node else "?" }} is not the one mlsm wrote' as problem
    where not exists (
        select 1 from {{ source('mlsm_registry', 'generated_files') }}
        where path = '{{ node.original_file_path if node else "" }}'
            and sha256 = '{{ node.checksum.checksum if node else "" }}'
    )

)

select problem from unregistered
union all
select problem from changed_file
{% endmacro %}
