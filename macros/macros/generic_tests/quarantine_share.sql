{#- Fails when the quarantine holds back more than `max_share` (a share, 0.01 = 1%) of the rows
    of `relation` for `column`. Returns the share, the quarantined and the total rows. -#}
{% test quarantine_share(model, relation, key, column, max_share) %}
    {{ return(adapter.dispatch('test_quarantine_share', 'mlsm')(model, relation, key, column, max_share)) }}
{% endtest %}

{% macro default__test_quarantine_share(model, relation, key, column, max_share) %}
with

held as (

    select count(distinct {{ key }}) as n
    from {{ model }}
    where column_name = '{{ column }}'

),

total as (

    select count(*) as n from {{ relation }}

)

select
    cast(held.n as {{ mlsm.type_double() }}) / nullif(total.n, 0) as share,
    held.n as quarantined,
    total.n as total_rows
from held
cross join total
where held.n > {{ max_share }} * total.n
{% endmacro %}
