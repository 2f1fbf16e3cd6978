-- depends_on: {{ ref('winners') }}
{#- Built only when every check on scores AND winners passed, so published scores and winners
    always come from the same run. -#}
{{ config(alias='scores') }}

with

scores as (

    select * from {{ ref('scores') }}

)

select * from scores
