{#- The relation's row count may differ from the previous published build's by at most
    `max_change` (a share: 0.5 = half). Passes on the first build. Returns the two counts. -#}
{% test volume_change(model, relation_name, max_change) %}
    {{ return(adapter.dispatch('test_volume_change', 'mlsm')(model, relation_name, max_change)) }}
{% endtest %}

{% macro default__test_volume_change(model, relation_name, max_change) %}
with

current_rows as (

    select count(*) as n from {{ model }}

),

published as (

    select volumes.rows as n, builds.finished_at
    from {{ source('mlsm_registry', 'build_volumes') }} as volumes
    inner join {{ source('mlsm_registry', 'builds') }} as builds
        on builds.run_id = volumes.run_id
    where volumes.relation = '{{ relation_name }}'
        and builds.status = 'published'

),

previous as (

    select n from published
    where finished_at = (select max(finished_at) from published)

)

select current_rows.n as rows_now, previous.n as rows_before
from current_rows
cross join previous
where abs(current_rows.n - previous.n) > {{ max_change }} * previous.n
{% endmacro %}
